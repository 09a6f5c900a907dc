"""The whole zoo: `kedro run --pipelines=cifar10 --env=smoke --runner=convbench.runner.DaskRunner` with no
address, as on a machine with two GPUs (`CUDA_VISIBLE_DEVICES=0,1`): the runner starts a cluster of this
machine with a worker pinned to each GPU, and every architecture trains on both, from ingestion to the
leaderboard. This is the suite's one run of every architecture end to end (a few minutes), so every check
of the zoo's outputs reads it.

These machines have no GPU: the workers' TensorFlow finds none and trains on the CPU, so what is checked
is the pinning itself, each worker seeing its one GPU, as dask-cuda's workers do. The default on a
machine without GPUs (one worker, every core) is checked in test_smoke_run.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cifar_archives
import mlflow
import pandas as pd
import pytest
from imagenet_weights import fill_keras_cache
from kedro_project import PNG_SIGNATURE, assert_ran, new_project, plain_logging, run_kedro

from convbench.models.registry import ARCHITECTURES
from convbench.pipeline_registry import register_pipelines

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    project = new_project(tmp_path_factory)
    keras_home = tmp_path_factory.mktemp("keras_home")
    fill_keras_cache(keras_home, alpha=0.35, input_size=96)
    env = {**plain_logging(project), "KERAS_HOME": str(keras_home), "CUDA_VISIBLE_DEVICES": "0,1"}
    result = run_kedro(
        project,
        "--pipelines=cifar10",
        cifar_archives.file_mirror_params(tmp_path_factory.mktemp("mirror")),
        env=env,
        timeout=1800,
        extra_args=("--runner=convbench.runner.DaskRunner",),
    )
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar10").experiment_id])
    node_runs = json.loads(Path(client.download_artifacts(run.info.run_id, "node_runs.json", str(project))).read_text())
    return project, assert_ran(result).stdout, run, node_runs["nodes"]


@pytest.fixture
def tracking(zoo_run):
    project, *_ = zoo_run
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_a_worker_is_started_and_pinned_for_each_gpu(zoo_run):
    _, log, _, node_runs = zoo_run
    assert "Dask: 2 worker(s), 2 thread(s); dashboard http://127.0.0.1:" in log
    gpus_by_worker = {}
    for entry in node_runs:
        gpus_by_worker.setdefault(entry["worker"], set()).add(tuple(entry["gpus"]))
    assert all(len(gpus) == 1 for gpus in gpus_by_worker.values()), "a worker sees the same GPUs on every node"
    assert sorted(gpus for (gpus,) in gpus_by_worker.values()) == [("0",), ("1",)], "each worker sees its one GPU"
    completed = re.findall(r"Completed node cifar10\.\w+\.train_model on tcp://127\.0\.0\.1:\d+ \(GPU (\d)\)", log)
    assert len(completed) == len(ARCHITECTURES) and set(completed) == {"0", "1"}, "trainings ran on both GPUs' workers"


def test_the_whole_zoo_trains_once_into_one_finished_run_and_the_leaderboard(zoo_run):
    project, _, run, node_runs = zoo_run
    nodes = {node.name for node in register_pipelines()["cifar10"].nodes}
    assert sorted(entry["node"] for entry in node_runs) == sorted(nodes), "every node, ingestion included, once"
    assert run.info.status == "FINISHED" and run.info.run_name == "cifar10"
    assert {run.data.tags[f"node_status.{name}"] for name in nodes} == {"completed"}
    board = pd.read_csv(project / "data/smoke/08_reporting/cifar10/leaderboard.csv")
    assert sorted(board["architecture"]) == sorted(ARCHITECTURES) and set(board["run_id"]) == {run.info.run_id}
    for architecture in ARCHITECTURES:
        row = board.set_index("architecture").loc[architecture]
        assert run.data.metrics[f"{architecture}.test_accuracy"] == pytest.approx(row["test_accuracy"])
    assert all(run.data.metrics[f"node_time_s.{name}"] > 0 for name in nodes)
    assert run.data.params["training.vgg16.epochs"] == "1"  # each node's parameters, logged by kedro-mlflow


def test_the_leaderboard_ranks_every_architecture_in_its_csv_markdown_and_plot(zoo_run, tracking):
    project, log, run, _ = zoo_run
    reports = project / "data/smoke/08_reporting/cifar10"
    board = pd.read_csv(reports / "leaderboard.csv")
    assert list(board["rank"]) == list(range(1, len(ARCHITECTURES) + 1))
    assert list(board["test_accuracy"]) == sorted(board["test_accuracy"], reverse=True)
    assert board.set_index("architecture").loc["mlp", "parameters"] == 205_642
    assert (board["train_images_per_s"] > 0).all() and (board["epochs"] >= 1).all()
    assert board.set_index("architecture").loc["mobilenet_v2_imagenet", "epochs"] == 2  # head, then fine-tuning
    assert (reports / "leaderboard.md").read_text().count("\n") == len(ARCHITECTURES) + 2
    png = (reports / "leaderboard.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 20_000
    artifacts = {a.path for a in tracking.list_artifacts(run.info.run_id, "cifar10")}
    assert {"cifar10/leaderboard.csv", "cifar10/leaderboard.md", "cifar10/leaderboard.png"} <= artifacts
    for architecture in ARCHITECTURES:
        assert f"Result: {architecture} on cifar10: test accuracy" in log


def test_every_architecture_leaves_its_model_curves_and_no_checkpoint(zoo_run, tracking):
    project, _, run, _ = zoo_run
    reports = project / "data/smoke/08_reporting/cifar10"
    for architecture in ARCHITECTURES:
        assert (reports / architecture / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)
        models = project / f"data/smoke/06_models/cifar10/{architecture}"
        assert len(list((models / "model.keras").glob("*/model.keras"))) == 1
        assert not (models / "checkpoint").exists()
        epochs = 2 if architecture == "mobilenet_v2_imagenet" else 1  # head, then fine-tuning
        for curve in ("loss", "val_accuracy"):  # logged from its worker, once each
            history = tracking.get_metric_history(run.info.run_id, f"{architecture}.{curve}")
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), (architecture, curve)
