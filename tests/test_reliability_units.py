"""The dataset lock and the MLflow run-status bookkeeping, with real processes and a real sqlite store."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from convbench.locking import DatasetBusyError, DatasetLocks
from convbench.tracking import KILLED_TAG, PROCESS_TAG, finished_runs, mark_orphaned_runs_killed, this_process


def test_a_lock_held_by_another_process_refuses_naming_it_and_a_dead_holder_frees_it(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from convbench.locking import DatasetLocks; "
            f"locks = DatasetLocks({str(tmp_path)!r}, ['cifar10']); locks.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(DatasetBusyError, match=f"process {holder.pid} on ") as busy:
        DatasetLocks(tmp_path, ["cifar10"], wait_s=0.2).acquire()
    assert "waited for 0.2 s" in str(busy.value)
    other = DatasetLocks(tmp_path, ["mnist"])
    other.acquire()  # another dataset is not held up
    other.release()
    holder.kill()  # kill -9: the operating system releases the lock
    holder.wait()
    after = DatasetLocks(tmp_path, ["cifar10", "mnist"])
    after.acquire()
    after.release()


def test_a_failed_acquire_holds_no_lock(tmp_path):
    first = DatasetLocks(tmp_path, ["mnist"])
    first.acquire()
    code = (
        "import sys; from convbench.locking import DatasetLocks, DatasetBusyError\n"
        f"locks = DatasetLocks({str(tmp_path)!r}, ['cifar10', 'mnist'])\n"
        "try:\n    locks.acquire()\nexcept DatasetBusyError:\n    pass\n"
        f"again = DatasetLocks({str(tmp_path)!r}, ['cifar10']); again.acquire(); print('cifar10 free')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    first.release()
    assert result.stdout.strip() == "cifar10 free", result.stderr


def test_runs_whose_process_is_gone_end_killed_and_live_or_foreign_runs_stay(tmp_path, monkeypatch):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("cifar10")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        host = this_process().split(":")[0]
        identities = {
            "dead": f"{host}:{dead.pid}:1",
            "live": this_process(),
            "foreign": f"another-host:{os.getpid()}:1",
            "reused_pid": f"{host}:{os.getpid()}:1",  # this pid, but another start time: the old process is gone
        }
        ids = {}
        for name, identity in identities.items():
            run = client.create_run(experiment, tags={PROCESS_TAG: identity})
            ids[name] = run.info.run_id
        untagged = client.create_run(experiment).info.run_id
        finished = client.create_run(experiment, tags={PROCESS_TAG: f"{host}:{dead.pid}:1"}).info.run_id
        client.set_terminated(finished, "FINISHED")

        assert sorted(mark_orphaned_runs_killed(client)) == sorted([ids["dead"], ids["reused_pid"]])
        status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
        assert status == {"dead": "KILLED", "live": "RUNNING", "foreign": "RUNNING", "reused_pid": "KILLED"}
        assert "was gone" in client.get_run(ids["dead"]).data.tags[KILLED_TAG]
        assert client.get_run(untagged).info.status == "RUNNING"
        assert [run.info.run_id for run in finished_runs(experiment)] == [finished]  # leaderboard, predict
        assert mark_orphaned_runs_killed(client) == []
    finally:
        mlflow.set_tracking_uri(None)


def test_readers_share_a_dataset_and_a_writer_waits_for_them_and_names_one(tmp_path):
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from convbench.locking import DatasetLocks; "
            f"locks = DatasetLocks({str(tmp_path)!r}, [], reads=['cifar10']); locks.acquire(); print('reading', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "reading"
    second_reader = DatasetLocks(tmp_path, ["cifar10.mlp"], reads=["cifar10"])
    second_reader.acquire()  # reads beside the other reader, and holds its architecture alone
    with pytest.raises(DatasetBusyError, match=f"process {reader.pid} on "):
        DatasetLocks(tmp_path, ["cifar10"]).acquire()  # a rewrite of the arrays waits for every reader
    with pytest.raises(DatasetBusyError, match="the mlp checkpoints of cifar10"):
        DatasetLocks(tmp_path, ["cifar10.mlp"], reads=["cifar10"]).acquire()
    second_reader.release()
    reader.kill()
    reader.wait()
    writer = DatasetLocks(tmp_path, ["cifar10"])
    writer.acquire()  # the dead reader's lock is gone with its process
    with pytest.raises(DatasetBusyError, match="Another kedro run is using the cifar10 data"):
        DatasetLocks(tmp_path, [], reads=["cifar10"]).acquire()  # nobody reads while it is rewritten
    writer.release()


def test_what_a_pipeline_holds_alone_and_what_it_shares():
    from kedro.framework.startup import bootstrap_project

    from convbench.hooks.locks import locked_names

    bootstrap_project(Path(__file__).resolve().parents[1])
    from convbench.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    assert locked_names(pipelines["cifar10_resnet"]) == (["cifar10", "cifar10.resnet"], [])
    assert locked_names(pipelines["cifar10_resnet"].only_nodes_with_tags("resnet")) == (["cifar10.resnet"], ["cifar10"])
    assert locked_names(pipelines["cifar10_resnet_search"]) == ([], ["cifar10"])
    assert locked_names(pipelines["cifar10_leaderboard"]) == ([], ["cifar10"])
    assert locked_names(pipelines["predict"]) == ([], [])
