import json
import re

import mlflow
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from convbench.hooks import MlflowNodeTrackingHook, PreflightHook


def identity(x):
    return x


def test_node_durations_statuses_and_summary_reach_the_mlflow_run(mlflow_run, tmp_path):
    hook = MlflowNodeTrackingHook()
    good = Node(identity, "a", "b", name="good_node")
    bad = Node(identity, "b", "c", name="bad_node")
    hook.before_pipeline_run({"pipeline_names": ["cifar10_resnet"], "env": "smoke", "project_path": str(tmp_path)})
    unsaved = Node(identity, "c", "d", name="unsaved_node")
    hook.before_node_run(good)
    hook.after_node_run(good)
    assert "node_time_s.good_node" not in mlflow.MlflowClient().get_run(mlflow_run.info.run_id).data.metrics
    hook.after_dataset_saved("b", good)  # the node's run ends when its last output is saved
    hook.before_node_run(bad)
    hook.on_node_error(bad)
    hook.before_node_run(unsaved)
    hook.after_node_run(unsaved)  # ran, but its output was never saved
    hook.on_pipeline_error()

    data = mlflow.MlflowClient().get_run(mlflow_run.info.run_id).data
    assert data.metrics["node_time_s.good_node"] >= 0
    assert data.metrics["node_time_s.bad_node"] >= 0
    assert data.tags["node_status.good_node"] == "completed"
    assert data.tags["node_status.bad_node"] == "failed"
    assert data.tags["node_status.unsaved_node"] == "failed"
    assert data.tags["convbench.pipelines"] == "cifar10_resnet" and data.tags["convbench.env"] == "smoke"
    summary = json.loads(mlflow.artifacts.load_text(f"runs:/{mlflow_run.info.run_id}/node_runs.json"))
    assert [(n["node"], n["status"]) for n in summary["nodes"]] == [
        ("good_node", "completed"),
        ("bad_node", "failed"),
        ("unsaved_node", "failed"),
    ]


def test_without_an_active_run_the_hook_only_keeps_its_records(tmp_path):
    hook = MlflowNodeTrackingHook()
    node = Node(identity, "a", "b", name="n")
    hook.before_pipeline_run({"pipeline_names": None, "env": None, "project_path": str(tmp_path)})
    hook.before_node_run(node)
    hook.after_node_run(node)
    hook.after_dataset_saved("b", node)
    hook.after_pipeline_run()
    assert hook._records[0]["status"] == "completed"


def test_preflight_nodes_run_before_the_pipeline_and_their_error_stops_it():
    calls = []

    def check_folder(folder):
        calls.append(folder)
        raise FileNotFoundError(f"place fer2013.csv in {folder}")

    def download(_):
        raise AssertionError("only preflight nodes run before the pipeline")

    locate = Node(check_folder, "params:folder", "checked", name="locate", tags=["preflight"])
    fetch = Node(download, "params:folder", "downloaded", name="download")
    catalog = DataCatalog({"params:folder": MemoryDataset("data/01_raw")})
    with pytest.raises(FileNotFoundError, match=re.escape("place fer2013.csv in data/01_raw")):
        PreflightHook().before_pipeline_run(Pipeline([fetch, locate]), catalog)
    assert calls == ["data/01_raw"]
    PreflightHook().before_pipeline_run(Pipeline([fetch]), catalog)  # nothing to check, nothing runs
    assert calls == ["data/01_raw"]
