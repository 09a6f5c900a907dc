"""Many machines, one record: `kedro run`s in separate processes, all pointed by MLFLOW_TRACKING_URI at
one MLflow tracking server whose backend is a real PostgreSQL database and whose artifacts go to a
local folder (`mlflow server --backend-store-uri postgresql+psycopg2://... --artifacts-destination ...`).

The smoke data is prepared once; then two architectures train at the same time, in two processes, on
that data (`--tags=<arch>`: only their training and reporting nodes), as two machines would; the
leaderboard, a third process, ranks both from the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import cifar_archives
import mlflow
import pandas as pd
import pytest
from kedro_project import KEDRO, MLFLOW_SERVER_ENV, assert_ran, kedro_command, kedro_env, new_project, run_kedro
from postgres import free_port

pytestmark = pytest.mark.e2e

PER_BATCH, TEST_RECORDS, VAL_SIZE = 200, 300, 300
ARCHITECTURES = ("mlp", "simple_cnn")
MLFLOW = KEDRO.with_name("mlflow")


@pytest.fixture(scope="module")
def tracking_server(postgres_server, tmp_path_factory):
    """`mlflow server` (one worker) on 127.0.0.1: runs in PostgreSQL, artifacts in a local folder; its URL and
    that folder."""
    folder = tmp_path_factory.mktemp("tracking_server")
    artifacts = folder / "artifacts"
    port = free_port()
    command = [
        str(MLFLOW),
        "server",
        "--backend-store-uri",
        postgres_server.create_database("mlflow_tracking"),  # postgresql+psycopg2://
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = kedro_env(MLFLOW_SERVER_ENV)
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the first start creates MLflow's tables in PostgreSQL
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{(folder / 'server.log').read_text()[-4000:]}")
                time.sleep(0.5)
        yield url, artifacts
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> list[str]:
    """`--params` of every run: the fixture archive of CIFAR-10 (official layout), from a file URL."""
    archive = tmp_path_factory.mktemp("mirror") / "cifar-10-binary.tar.gz"
    cifar_archives.make_cifar10_archive(archive, per_batch=PER_BATCH, test=TEST_RECORDS)
    return [
        f"ingestion.cifar10.source.url={archive.as_uri()}",
        f"ingestion.cifar10.source.known_hash={cifar_archives.known_hash(archive)}",
        f"ingestion.cifar10.expected_counts.train={5 * PER_BATCH}",
        f"ingestion.cifar10.expected_counts.test={TEST_RECORDS}",
        f"preprocessing.cifar10.val_size={VAL_SIZE}",
    ]


def run_side_by_side(project: Path, commands: list[list[str]], env: dict[str, str], timeout: float = 900) -> list:
    """Starts every command at once in `project` (output to a file each, so no pipe fills and stalls one),
    waits for all; their results, whatever their exit status."""
    logs = [project / f"machine_{index}.log" for index in range(len(commands))]
    processes = []
    try:
        for command, log in zip(commands, logs):
            with log.open("w") as output:
                processes.append(
                    subprocess.Popen(command, cwd=project, stdout=output, stderr=subprocess.STDOUT, text=True, env=env)
                )
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [
        subprocess.CompletedProcess(process.args, process.returncode, log.read_text(), "")
        for process, log in zip(processes, logs)
    ]


@pytest.fixture(scope="module")
def shared_record(tmp_path_factory, tracking_server, params):
    """Data prepared once; `mlp` and `simple_cnn` trained at the same time in two processes; then the
    leaderboard. Every run sent to the tracking server by MLFLOW_TRACKING_URI alone."""
    url, artifacts = tracking_server
    project = new_project(tmp_path_factory)
    to_server = {"MLFLOW_TRACKING_URI": url}
    assert_ran(run_kedro(project, "--pipelines=cifar10_ingestion,cifar10_preprocessing", params, env=to_server))
    trainings = [
        kedro_command(f"--pipelines=cifar10_{architecture}", params, (f"--tags={architecture}",))
        for architecture in ARCHITECTURES
    ]
    for result in run_side_by_side(project, trainings, kedro_env(to_server)):
        assert_ran(result)
    assert_ran(run_kedro(project, "--pipelines=cifar10_leaderboard", params, env=to_server))
    return project, url, artifacts


@pytest.fixture(scope="module")
def server_runs(shared_record) -> dict[str, mlflow.entities.Run]:
    """The runs of experiment `cifar10` on the server, by run name."""
    _, url, _ = shared_record
    client = mlflow.MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("cifar10")
    assert experiment is not None, "no experiment cifar10 on the tracking server"
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def test_both_trainings_are_finished_runs_of_experiment_cifar10_on_the_server(server_runs):
    trainings = [server_runs[f"cifar10_{architecture}"] for architecture in ARCHITECTURES]
    assert {run.info.status for run in trainings} == {"FINISHED"}
    for architecture, run in zip(ARCHITECTURES, trainings):
        assert 0 <= run.data.metrics[f"{architecture}.test_accuracy"] <= 1
        assert run.data.tags["convbench.env"] == "smoke"
    first, second = trainings
    assert first.info.start_time < second.info.end_time and second.info.start_time < first.info.end_time, (
        "the two trainings ran side by side"
    )
    assert server_runs["cifar10_leaderboard"].info.status == "FINISHED"


def test_their_reports_and_models_are_in_the_servers_artifact_folder(shared_record, server_runs):
    _, url, artifacts = shared_record
    experiment_id = server_runs["cifar10_mlp"].info.experiment_id
    models = {
        model.name: model for model in mlflow.MlflowClient(tracking_uri=url).search_logged_models([experiment_id])
    }
    assert set(models) == {f"cifar10_{architecture}_classifier" for architecture in ARCHITECTURES}
    for architecture in ARCHITECTURES:
        run = server_runs[f"cifar10_{architecture}"]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "uploaded through the server"
        stored = artifacts / experiment_id / run.info.run_id / "artifacts"
        table = pd.read_csv(stored / f"cifar10_{architecture}" / "metrics.csv")
        assert table.loc[0, "test_accuracy"] == pytest.approx(run.data.metrics[f"{architecture}.test_accuracy"])
        assert (stored / f"cifar10_{architecture}" / "learning_curves.png").stat().st_size > 10_000
        assert json.loads((stored / "node_runs.json").read_text())["nodes"]
        model = models[f"cifar10_{architecture}_classifier"]
        assert model.source_run_id == run.info.run_id
        mlmodel = artifacts / experiment_id / "models" / model.model_id / "artifacts" / "MLmodel"
        assert "python_function" in mlmodel.read_text()  # the servable classifier, on the server's disk


def test_the_leaderboard_ranks_both_architectures_from_the_server(shared_record, server_runs):
    project, _, _ = shared_record
    board = pd.read_csv(project / "data/smoke/08_reporting/cifar10/leaderboard.csv")
    assert sorted(board["architecture"]) == sorted(ARCHITECTURES)
    assert dict(zip(board["architecture"], board["run_id"])) == {
        architecture: server_runs[f"cifar10_{architecture}"].info.run_id for architecture in ARCHITECTURES
    }
    assert list(board["rank"]) == [1, 2]
    assert list(board["test_accuracy"]) == sorted(board["test_accuracy"], reverse=True)
    markdown = (project / "data/smoke/08_reporting/cifar10/leaderboard.md").read_text()
    assert all(architecture in markdown for architecture in ARCHITECTURES)


def test_nothing_went_to_an_embedded_store(shared_record):
    project, _, _ = shared_record
    assert not (project / "mlflow.db").exists()
    assert not (project / "mlruns").exists()
