"""Faults with real processes: `kill -9` mid-training, a Dask worker lost mid-training, SIGTERM, and two
`kedro run`s on one dataset.

One project, runs in order (each test uses the state the previous left):
1. `cifar10_resnet` (smoke, several epochs) uninterrupted but for a pause once it holds the dataset lock,
   in which a second run of the same dataset is started and refused;
2. the same run `kill -9`'d after its second epoch, then rerun: it resumes and its model equals run 1's;
3. the same run on a Dask scheduler and two workers (`convbench.runner.DaskRunner`), the worker that
   trains `kill -9`'d after its second epoch: the other worker resumes the training from its checkpoint
   within the same `kedro run`, each epoch is logged once and no finished node runs again;
4. the same run sent SIGTERM: it saves at the next batch, ends its MLflow run as KILLED, exits non-zero
   and prints the command that resumes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import cifar_archives
import dask_cluster
import keras
import mlflow
import numpy as np
import pytest
from kedro_project import KEDRO, assert_ran, new_project, plain_logging

from convbench.tracking import KILLED_TAG, PROCESS_TAG, finished_runs

pytestmark = pytest.mark.e2e

PER_BATCH, TEST_RECORDS, EPOCHS = 200, 300, 4
CHECKPOINT = Path("data/smoke/06_models/cifar10/resnet/checkpoint")
MODELS = Path("data/smoke/06_models/cifar10/resnet/model.keras")
COMMANDS: dict[Path, list[str]] = {}  # project -> its `kedro run` command
WIDE_LOGS = dict(os.environ)  # + plain_logging: one unwrapped line per message, so messages can be matched


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = new_project(tmp_path_factory)
    WIDE_LOGS.update(plain_logging(root))
    archive = tmp_path_factory.mktemp("mirror") / "cifar-10-binary.tar.gz"
    cifar_archives.make_cifar10_archive(archive, per_batch=PER_BATCH, test=TEST_RECORDS)
    COMMANDS[root] = [
        str(KEDRO),
        "run",
        "--pipelines=cifar10_resnet",
        "--env=smoke",
        "--params="
        + ",".join(
            [
                f"ingestion.cifar10.source.url={archive.as_uri()}",
                f"ingestion.cifar10.source.known_hash={cifar_archives.known_hash(archive)}",
                f"ingestion.cifar10.expected_counts.train={5 * PER_BATCH}",
                f"ingestion.cifar10.expected_counts.test={TEST_RECORDS}",
                "preprocessing.cifar10.val_size=300",
                f"training.resnet.epochs={EPOCHS}",
            ]
        ),
    ]
    return root


def start(project: Path, extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMANDS[project], *extra_args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=WIDE_LOGS,
    )


def finish(process: subprocess.Popen, timeout: float = 900) -> subprocess.CompletedProcess:
    output, _ = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


def wait_for(condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def epochs_done(project: Path) -> int:
    try:
        return json.loads((project / CHECKPOINT / "state.json").read_text())["epochs_done"]
    except (OSError, ValueError):
        return 0


def runs(project: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("cifar10")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]) if experiment else []
    mlflow.set_tracking_uri(None)
    return found


def latest_model(project: Path) -> keras.Model:
    version = sorted(path.name for path in (project / MODELS).iterdir())[-1]
    return keras.models.load_model(project / MODELS / version / "model.keras")


def sqlite_locked(database: Path) -> bool:
    """Whether another connection holds any lock on the sqlite file `database` (a read, a write)."""
    connection = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=0)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        connection.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()


def stop_outside_the_mlflow_store(process: subprocess.Popen, project: Path) -> None:
    """Stops `process` (SIGSTOP to its group) at a moment it holds no lock on the project's MLflow store:
    stopped mid-transaction, it would lock every other run out of `mlflow.db`."""
    while True:
        os.killpg(process.pid, signal.SIGSTOP)
        if not sqlite_locked(project / "mlflow.db"):
            return
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(project):
    """Run 1, and a second run of the same dataset started while it holds the lock.

    Run 1 is stopped while the second runs: however slowly the second starts, run 1 still holds the lock then.
    """
    first = start(project)
    wait_for(
        lambda: (project / "data/smoke/.locks/cifar10.owner.json").exists() or first.poll() is not None, "the lock"
    )
    assert first.poll() is None, first.communicate()[0][-5000:]
    stop_outside_the_mlflow_store(first, project)
    try:
        second = subprocess.run(
            COMMANDS[project], cwd=project, capture_output=True, text=True, timeout=600, env=WIDE_LOGS
        )
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    result = assert_ran(finish(first))
    return result, second, latest_model(project).get_weights()


def test_a_second_run_on_the_same_dataset_stops_naming_the_first_and_harms_nothing(project, uninterrupted):
    _, second, _ = uninterrupted
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert "Another kedro run is using the cifar10 data" in output and "CONVBENCH_LOCK_WAIT_S" in output
    owner = json.loads((project / "data/smoke/.locks/cifar10.owner.json").read_text())
    assert f"process {owner['pid']}" in output
    (run,) = runs(project)  # the refused run started no MLflow run; the first finished
    assert run.info.status == "FINISHED"
    images = np.load(project / "data/smoke/02_intermediate/cifar10/train_images.npy")
    assert images.shape == (5 * PER_BATCH, 32, 32, 3)
    assert not list((project / "data/smoke").rglob(".*.partial*")), "no temporary file left behind"


def test_kill_9_after_two_epochs_resumes_there_and_trains_the_same_model(project, uninterrupted):
    _, _, reference = uninterrupted
    killed = start(project)
    wait_for(lambda: epochs_done(project) >= 2 or killed.poll() is not None, "two epochs")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    done = epochs_done(project)
    assert 2 <= done < EPOCHS, f"killed after epoch {done}"
    killed_run = runs(project)[-1]
    assert killed_run.info.status == "RUNNING" and killed_run.data.tags[PROCESS_TAG]

    resumed = assert_ran(finish(start(project)))
    assert f"from its checkpoint after epoch {done}" in resumed.stdout, resumed.stdout[-5000:]
    *_, killed_after, resumed_run = runs(project)
    assert killed_after.info.run_id == killed_run.info.run_id
    assert killed_after.info.status == "KILLED" and "was gone" in killed_after.data.tags[KILLED_TAG]
    assert resumed_run.info.status == "FINISHED"
    assert resumed_run.data.tags["convbench.resumed_from_run"] == killed_run.info.run_id
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        listed = {run.info.run_id for run in finished_runs(killed_run.info.experiment_id)}
    finally:
        mlflow.set_tracking_uri(None)
    assert killed_run.info.run_id not in listed and resumed_run.info.run_id in listed  # what the leaderboard reads
    # Same seed, same batches and augmentations: the resumed model is the uninterrupted one.
    for after_kill, whole in zip(latest_model(project).get_weights(), reference, strict=True):
        np.testing.assert_allclose(after_kill, whole, rtol=0, atol=1e-6)


def test_a_dask_worker_killed_mid_training_is_replaced_and_the_training_resumes_on_the_other(
    project, uninterrupted, tmp_path
):
    with dask_cluster.dask_cluster(tmp_path / "dask", cwd=project, env=WIDE_LOGS) as cluster:
        addresses = cluster.addresses()
        run = start(project, ("--runner=convbench.runner.DaskRunner", f"--runner-params=address={cluster.address}"))
        wait_for(lambda: epochs_done(project) >= 2 or run.poll() is not None, "two epochs on a worker")
        (trainer,) = [name for name in cluster.workers if f"Epoch 1/{EPOCHS}" in cluster.log(name)]
        cluster.kill(trainer)
        at_kill = json.loads((project / CHECKPOINT / "state.json").read_text())
        done = at_kill["epochs_done"]
        assert 2 <= done < EPOCHS, f"killed after epoch {done}"
        result = assert_ran(finish(run))
        (survivor,) = set(cluster.workers) - {trainer}
        assert f"from its checkpoint after epoch {done}" in cluster.log(survivor), cluster.log(survivor)[-5000:]

    dask_run = runs(project)[-1]
    assert dask_run.info.status == "FINISHED" and "convbench.resumed_from_run" not in dask_run.data.tags
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        steps = [metric.step for metric in client.get_metric_history(dask_run.info.run_id, "resnet.val_accuracy")]
        node_runs = json.loads(mlflow.artifacts.load_text(f"runs:/{dask_run.info.run_id}/node_runs.json"))["nodes"]
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(steps) == list(range(1, EPOCHS + 1)), "each epoch logged once, none replayed into the same run"
    (training,) = [entry for entry in node_runs if entry["node"] == "cifar10.resnet.train_model"]
    assert training["status"] == "completed" and training["worker"] == addresses[survivor]
    assert f"Completed node cifar10.resnet.train_model on {addresses[survivor]}" in result.stdout
    assert len(node_runs) == len({entry["node"] for entry in node_runs}), "no node counted twice"
    runs_of = {  # the log names a node without its namespace: `Running node: train_model: train_model(...)`
        entry["node"]: sum(
            cluster.log(name).count(f"Running node: {entry['node'].rsplit('.', 1)[-1]}:") for name in cluster.workers
        )
        for entry in node_runs
    }
    assert runs_of.pop("cifar10.resnet.train_model") == 2  # on the lost worker, then resumed on the other
    assert runs_of.pop("cifar10.resnet.build_model") in (1, 2)  # again only if its untrained model was lost
    assert set(runs_of.values()) == {1}, f"a finished node ran again after the worker was lost: {runs_of}"
    history = json.loads((project / "data/smoke/07_model_output/cifar10/resnet/history.json").read_text())
    assert len(history["loss"]) == EPOCHS and history["loss"][:done] == at_kill["history"]["loss"], (
        "resumed, not redone"
    )
    # Not compared with run 1's weights: Dask's own threads draw from Python's `random`, from which Keras takes
    # the seeds of layers built without one, so a model built on a Dask worker differs from a sequential run's.


def test_sigterm_saves_at_the_next_batch_ends_the_run_killed_and_prints_how_to_resume(project, uninterrupted):
    terminated = start(project)
    wait_for(lambda: epochs_done(project) >= 1 or terminated.poll() is not None, "an epoch")
    os.kill(terminated.pid, signal.SIGTERM)
    result = finish(terminated, timeout=300)
    assert result.returncode != 0
    assert (
        "SIGTERM" in result.stdout and "Resume with: kedro run --pipelines=cifar10_resnet --env=smoke" in result.stdout
    )
    state = json.loads((project / CHECKPOINT / "state.json").read_text())
    assert state["steps_into_epoch"] >= 1 and (project / CHECKPOINT / state["model"]).exists()
    run = runs(project)[-1]
    assert run.info.status == "KILLED" and run.data.tags[KILLED_TAG] == "SIGTERM"
