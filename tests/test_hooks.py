"""Every Kedro hook of the `convbench.hooks` modules, called as Kedro calls them, with real MLflow stores and catalogs."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from omegaconf import OmegaConf

from convbench.datasets import PathDataset
from convbench.hooks import mlflow_runs
from convbench.hooks.checkpoints import CheckpointCleanupHook
from convbench.hooks.mlflow_runs import MlflowExperimentHook, MlflowNodeTrackingHook
from convbench.hooks.preflight import PREFLIGHT_TAG, MissingPreparedDataError, PreflightHook
from convbench.hooks.resolvers import ProjectPathResolverHook


def identity(x):
    return x


class FakeClock:
    """`time.perf_counter` stand-in that returns the given readings in turn."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


def test_node_durations_statuses_and_summary_reach_the_mlflow_run(mlflow_run, tmp_path, monkeypatch):
    hook = MlflowNodeTrackingHook()
    good = Node(identity, "a", "b", name="good_node")
    bad = Node(identity, "b", "c", name="bad_node")
    unsaved = Node(identity, "c", "d", name="unsaved_node")
    # good starts at 10 and its output is saved at 12.5; bad starts at 20 and fails at 21;
    # unsaved starts at 30, runs, and is marked failed when the pipeline fails at 34.
    monkeypatch.setattr(mlflow_runs.time, "perf_counter", FakeClock(10.0, 12.5, 20.0, 21.0, 30.0, 34.0))
    hook.before_pipeline_run({"pipeline_names": ["cifar10_resnet"], "env": "smoke", "project_path": str(tmp_path)})
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
    assert data.metrics["node_time_s.good_node"] == pytest.approx(2.5)
    assert data.metrics["node_time_s.bad_node"] == pytest.approx(1.0)
    assert data.metrics["node_time_s.unsaved_node"] == pytest.approx(4.0)
    assert data.tags["node_status.good_node"] == "completed"
    assert data.tags["node_status.bad_node"] == "failed"
    assert data.tags["node_status.unsaved_node"] == "failed"
    assert data.tags["convbench.pipelines"] == "cifar10_resnet" and data.tags["convbench.env"] == "smoke"
    assert data.tags["convbench.keras_backend"] == keras.backend.backend()
    summary = json.loads(mlflow.artifacts.load_text(f"runs:/{mlflow_run.info.run_id}/node_runs.json"))
    assert [(n["node"], n["status"], n["seconds"]) for n in summary["nodes"]] == [
        ("good_node", "completed", 2.5),
        ("bad_node", "failed", 1.0),
        ("unsaved_node", "failed", 4.0),
    ]


def test_without_an_active_run_the_node_hook_logs_nothing_and_starts_no_run(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        hook = MlflowNodeTrackingHook()
        node = Node(identity, "a", "b", name="n")
        hook.before_pipeline_run({"pipeline_names": None, "env": None, "project_path": str(tmp_path)})
        hook.before_node_run(node)
        hook.after_node_run(node)
        hook.after_dataset_saved("b", node)
        hook.after_pipeline_run()
        assert mlflow.active_run() is None
        assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
    finally:
        mlflow.set_tracking_uri(None)


def test_preflight_nodes_run_before_the_pipeline_and_their_error_stops_it():
    calls = []

    def check_folder(folder):
        calls.append(folder)
        raise FileNotFoundError(f"place fer2013.csv in {folder}")

    def download(_):
        raise AssertionError("only preflight nodes run before the pipeline")

    locate = Node(check_folder, "params:folder", "checked", name="locate", tags=[PREFLIGHT_TAG])
    fetch = Node(download, "params:folder", "downloaded", name="download")
    catalog = DataCatalog({"params:folder": MemoryDataset("data/01_raw")})
    with pytest.raises(FileNotFoundError, match=re.escape("place fer2013.csv in data/01_raw")):
        PreflightHook().before_pipeline_run({}, Pipeline([fetch, locate]), catalog)
    assert calls == ["data/01_raw"]
    PreflightHook().before_pipeline_run({}, Pipeline([fetch]), catalog)  # nothing to check, nothing runs
    assert calls == ["data/01_raw"]


def test_missing_prepared_data_stops_the_run_naming_the_files_from_the_catalog_patterns(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "{dataset}.train_images": {
                "type": "convbench.datasets.NumpyDataset",
                "filepath": f"{tmp_path}/{{dataset}}/train.npy",
            },
            "cifar10.resnet.model": {"type": "MemoryDataset"},
        }
    )
    train = Node(identity, "cifar10.train_images", "cifar10.resnet.model", name="train")
    with pytest.raises(MissingPreparedDataError) as stopped:
        PreflightHook().before_pipeline_run({"env": "smoke"}, Pipeline([train]), catalog)
    assert f"{tmp_path}/cifar10/train.npy" in str(stopped.value)
    assert "kedro run --pipelines=cifar10_data --env=smoke" in str(stopped.value)
    (tmp_path / "cifar10").mkdir()
    np.save(tmp_path / "cifar10" / "train.npy", np.zeros(3))
    PreflightHook().before_pipeline_run({"env": "smoke"}, Pipeline([train]), catalog)  # prepared: nothing raised


@pytest.fixture
def mlflow_context(tmp_path):
    """A Kedro context stand-in carrying a real kedro-mlflow configuration on a temp sqlite store."""
    config = KedroMlflowConfig(server={"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    context = SimpleNamespace(project_path=tmp_path, mlflow=config, _get_config_credentials=dict)
    config.setup(context)
    yield context
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    ("pipeline_names", "experiment"),
    [
        (["cifar100_resnet"], "cifar100"),
        (["cifar10"], "cifar10"),
        (None, "cifar10"),  # __default__ is cifar10_resnet
        (["ferplus_vgg13", "ferplus_leaderboard"], "ferplus"),
        (["predict"], "predict"),
    ],
)
def test_each_run_goes_to_the_experiment_of_its_dataset(mlflow_context, pipeline_names, experiment):
    hook = MlflowExperimentHook()
    hook.after_context_created(mlflow_context)
    hook.before_pipeline_run({"pipeline_names": pipeline_names})
    assert mlflow_context.mlflow.tracking.experiment.name == experiment
    created = mlflow.get_experiment_by_name(experiment)
    assert created is not None and created.lifecycle_stage == "active"
    with mlflow.start_run() as run:  # what kedro-mlflow does next: the active experiment is the dataset's
        assert run.info.experiment_id == created.experiment_id


def test_a_run_of_several_datasets_keeps_the_configured_experiment(mlflow_context):
    hook = MlflowExperimentHook()
    hook.after_context_created(mlflow_context)
    hook.before_pipeline_run({"pipeline_names": ["cifar10_resnet", "mnist_resnet"]})
    assert mlflow_context.mlflow.tracking.experiment.name == "Default"
    assert mlflow.get_experiment_by_name("cifar10") is None and mlflow.get_experiment_by_name("mnist") is None


def test_checkpoints_are_removed_when_the_run_succeeds_and_nothing_else(tmp_path):
    checkpoint = tmp_path / "06_models" / "cifar10" / "resnet" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "epoch-0001.keras").write_bytes(b"weights")
    (checkpoint / "state.json").write_text("{}")
    model_folder = tmp_path / "keep"
    model_folder.mkdir()
    catalog = DataCatalog(
        {
            "cifar10.resnet.checkpoint_dir": PathDataset(path=str(checkpoint)),
            "cifar10.resnet.other_dir": PathDataset(path=str(model_folder)),
        }
    )
    pipeline = Pipeline(
        [
            Node(identity, "cifar10.resnet.checkpoint_dir", "trained", name="train"),
            Node(identity, "cifar10.resnet.other_dir", "kept", name="other"),
        ]
    )
    CheckpointCleanupHook().after_pipeline_run(pipeline, catalog)
    assert not checkpoint.exists() and model_folder.is_dir()
    CheckpointCleanupHook().after_pipeline_run(pipeline, catalog)  # already gone: no error


def test_the_configuration_can_name_files_in_the_project_folder(tmp_path):
    ProjectPathResolverHook().after_context_created(SimpleNamespace(project_path=tmp_path / "project" / ".."))
    config = OmegaConf.create({"uri": "sqlite:///${convbench.project_path:}/mlflow.db"})
    assert config.uri == f"sqlite:///{Path(tmp_path).resolve()}/mlflow.db"
