"""convbench.runner without `kedro run`: the DaskRunner on an in-process cluster, the local cluster's GPU
pinning and threads (checked on a CPU machine from the workers' environment), a many-threaded worker
spreading its nodes over its devices (two logical CPU devices standing for two GPUs), and a call logging
into a run its thread did not start (`tracking.in_run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
from distributed import Client, LocalCluster, get_worker
from distributed.system import MEMORY_LIMIT
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.json import JSONDataset

from convbench import runner
from convbench.runner import (
    FANS_OUT_TAG,
    WORKER_DEVICES_ENV,
    DaskRunner,
    DeviceSlots,
    NodeOutcome,
    local_cluster,
    node_process_hook_manager,
    on_device,
    on_every_worker,
    visible_gpus,
    worker_devices,
)
from convbench.tracking import RunEnded, RunLink, in_run, start_nested_run


def double(x: int) -> int:
    return 2 * x


def add_offset(doubled: int, offset: int) -> dict[str, int]:
    return {"value": doubled + offset}


def refuse(value: int) -> None:
    raise ValueError(f"refused {value}")


class ParameterRecorder:
    """Records the inputs each `before_node_run` call of the runner's process is given."""

    def __init__(self) -> None:
        self.inputs: dict[str, dict] = {}

    @hook_impl
    def before_node_run(self, node, inputs) -> None:
        self.inputs[node.name] = dict(inputs)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as local:
        yield local


def toy_catalog(tmp_path) -> DataCatalog:
    catalog = DataCatalog(
        datasets={"x": MemoryDataset(21), "result": JSONDataset(filepath=str(tmp_path / "result.json"))}
    )
    catalog["params:offset"] = 100
    return catalog


def test_nodes_run_on_the_cluster_with_memory_outputs_passed_on_and_parameters_logged_here(cluster, tmp_path):
    pipeline = Pipeline(
        [
            node(double, "x", "doubled", name="double"),
            node(add_offset, ["doubled", "params:offset"], "result", name="add_offset"),
        ]
    )
    hook_manager, tracking = node_process_hook_manager()
    recorder = ParameterRecorder()
    hook_manager.register(recorder)
    DaskRunner(address=cluster.scheduler_address).run(pipeline, toy_catalog(tmp_path), hook_manager)
    assert json.loads((tmp_path / "result.json").read_text()) == {"value": 142}  # `doubled` came from the worker
    assert recorder.inputs == {"double": {}, "add_offset": {"params:offset": 100}}  # parameters only, no data
    assert tracking.records == [], "the hook that times nodes runs where they run, not here"


def test_a_failing_node_stops_the_run_with_its_own_error_and_nothing_after_it_runs(cluster, tmp_path, monkeypatch):
    pipeline = Pipeline(
        [
            node(double, "x", "doubled", name="double"),
            node(refuse, "doubled", "refused", name="refuse"),
            node(add_offset, ["refused", "params:offset"], "result", name="add_offset"),
        ]
    )
    hook_manager, _ = node_process_hook_manager()
    logged = []
    monkeypatch.setattr(runner, "log_node_runs", logged.append)
    with pytest.raises(ValueError, match="refused 42"):
        DaskRunner(address=cluster.scheduler_address).run(pipeline, toy_catalog(tmp_path), hook_manager)
    assert not (tmp_path / "result.json").exists()
    (records,) = logged
    assert [(record["node"], record["status"]) for record in records] == [("double", "completed"), ("refuse", "failed")]
    assert records[1]["worker"] in cluster.scheduler_info["workers"], "the worker it failed on"


def where(index: int, data: dict[str, int]) -> tuple[int, str, int]:
    time.sleep(0.5)  # long enough for the two to overlap
    return index, get_worker().address, data["payload"]


def fan_out(payload: int) -> dict[str, list | None]:
    return {"results": on_every_worker(where, {"payload": payload})}


def test_a_fans_out_node_runs_a_task_on_every_worker_its_own_included(cluster, tmp_path):
    catalog = DataCatalog(
        datasets={"payload": MemoryDataset(7), "result": JSONDataset(filepath=str(tmp_path / "r.json"))}
    )
    pipeline = Pipeline([node(fan_out, "payload", "result", name="fan_out", tags=[FANS_OUT_TAG])])
    DaskRunner(address=cluster.scheduler_address).run(pipeline, catalog, node_process_hook_manager()[0])
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert sorted(index for index, _, _ in results) == [0, 1]
    assert {address for _, address, _ in results} == set(cluster.scheduler_info["workers"])
    assert {payload for _, _, payload in results} == {7}


def test_an_untagged_node_or_a_plain_call_runs_nothing_on_the_cluster(cluster, tmp_path):
    catalog = DataCatalog(
        datasets={"payload": MemoryDataset(7), "result": JSONDataset(filepath=str(tmp_path / "r.json"))}
    )
    pipeline = Pipeline([node(fan_out, "payload", "result", name="fan_out")])
    DaskRunner(address=cluster.scheduler_address).run(pipeline, catalog, node_process_hook_manager()[0])
    assert json.loads((tmp_path / "r.json").read_text()) == {"results": None}
    assert fan_out(7) == {"results": None}


def test_the_scheduler_address_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    assert DaskRunner()._address == "tcp://10.0.0.5:8786"
    assert DaskRunner(address="tcp://10.0.0.6:8786")._address == "tcp://10.0.0.6:8786"
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert DaskRunner()._address is None  # a cluster of this machine


@pytest.mark.parametrize(("declared", "gpus"), [("0,2", ["0", "2"]), ("", []), ("-1", []), (" 1 , 3 ", ["1", "3"])])
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch, declared, gpus):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", declared)
    assert visible_gpus() == gpus


def test_a_machine_with_two_gpus_gets_one_single_threaded_worker_pinned_to_each(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    with local_cluster(gpus=["0", "1"]) as cluster, Client(cluster) as client:
        workers = client.scheduler_info()["workers"]
        assert [worker["nthreads"] for worker in workers.values()] == [1, 1]
        seen = client.run(
            lambda: tuple(
                os.environ[name] for name in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH", "OMP_NUM_THREADS")
            )
        )
    assert sorted(seen.values()) == [("0", "true", "4"), ("1", "true", "4")]  # half the cores each
    assert [worker["memory_limit"] for worker in workers.values()] == [MEMORY_LIMIT // 2] * 2, "half the RAM each"


def test_without_gpus_one_worker_gets_every_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    with local_cluster(gpus=[]) as cluster, Client(cluster) as client:
        (worker,) = client.scheduler_info()["workers"].values()
        threads = client.run(lambda: (os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]))
    assert worker["nthreads"] == 1, "one node at a time"
    assert set(threads.values()) == {("6", "6")}, "a Dask nanny would leave them at 1"


def test_device_slots_give_each_running_node_the_least_held_device_and_take_it_back():
    slots = DeviceSlots(["gpu:0", "gpu:1"])
    with slots.taken() as first, slots.taken() as second:
        with slots.taken() as third:
            assert (first, second, third) == ("gpu:0", "gpu:1", "gpu:0"), "a third node shares the first device"
        with slots.taken() as after_third:
            assert after_third == "gpu:0", "a tie goes to the first device"
    with slots.taken() as freed:
        assert freed == "gpu:0"
    with DeviceSlots([]).taken() as none:
        assert none is None, "no devices to spread over: the worker's default"


def test_device_slots_hand_out_distinct_devices_to_concurrent_threads():
    slots = DeviceSlots(["gpu:0", "gpu:1", "gpu:2"])
    all_in = threading.Barrier(3, timeout=10)
    held: list[str] = []

    def hold() -> None:
        with slots.taken() as device:
            held.append(device)
            all_in.wait()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(held) == ["gpu:0", "gpu:1", "gpu:2"]


def test_a_worker_spreads_its_nodes_over_its_gpus_only_with_several_gpus_and_threads(monkeypatch):
    monkeypatch.delenv(WORKER_DEVICES_ENV, raising=False)
    monkeypatch.setattr(runner, "worker_gpus", lambda: ["2", "5"])  # CUDA_VISIBLE_DEVICES=2,5: Keras' gpu:0, gpu:1
    assert worker_devices(nthreads=4) == ["gpu:0", "gpu:1"]
    assert worker_devices(nthreads=1) == [], "one node at a time: nothing to spread"
    monkeypatch.setattr(runner, "worker_gpus", lambda: ["0"])
    assert worker_devices(nthreads=4) == []
    monkeypatch.setenv(WORKER_DEVICES_ENV, " gpu:1, gpu:0 ,")
    assert worker_devices(nthreads=1) == ["gpu:1", "gpu:0"], "the declared devices win"


def test_on_device_leaves_anything_but_a_keras_model_and_any_data_without_a_device_as_it_is():
    data = {"weights": [1, 2]}
    assert on_device(data, "gpu:1") is data
    assert on_device(data, None) is data


def test_a_node_report_names_its_gpus_and_the_device_it_ran_on():
    outcome = NodeOutcome("train", "tcp://10.0.0.3:40321", ["0", "1"], "gpu:1", 1.0, [])
    assert outcome.where() == "tcp://10.0.0.3:40321 (GPU 0,1; on gpu:1)"
    assert NodeOutcome("train", "tcp://w:1", ["1"], None, 1.0, []).where() == "tcp://w:1 (GPU 1)"
    assert NodeOutcome("train", "tcp://w:1", [], None, 1.0, []).where() == "tcp://w:1"


@pytest.fixture(scope="module")
def two_device_worker(tmp_path_factory) -> dict:
    """What tests/device_slots_run.py saw on one two-thread worker over two logical CPU devices (it sets them
    before TensorFlow starts, so it runs in a process of its own)."""
    out = tmp_path_factory.mktemp("device_slots") / "seen.json"
    script = Path(__file__).with_name("device_slots_run.py")
    done = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def variables_on(device: str) -> list[str]:
    """Where TensorFlow says a variable placed on Keras device `cpu:<i>` lives."""
    return [f"/job:localhost/replica:0/task:0/device:CPU:{device.removeprefix('cpu:')}"]


def test_two_trainings_at_once_on_one_worker_each_run_on_a_device_of_their_own(two_device_worker):
    records = {record["node"]: record for record in two_device_worker["records"]}
    seen = two_device_worker["seen"]
    assert seen["seen_a"]["thread"] != seen["seen_b"]["thread"], "the trainings ran at once, on two threads"
    assert {records["train_a"]["device"], records["train_b"]["device"]} == {"cpu:0", "cpu:1"}
    for name in ("a", "b"):
        where = variables_on(records[f"train_{name}"]["device"])
        assert seen[f"seen_{name}"]["variables"] == where, f"training {name}'s weights live on its device"
        assert seen[f"seen_{name}"]["optimizer"] == where, f"training {name}'s optimizer state lives on its device"


def test_a_model_built_on_one_device_is_moved_to_the_device_its_training_runs_on(two_device_worker):
    records = {record["node"]: record for record in two_device_worker["records"]}
    assert records["build_a"]["device"] == records["build_b"]["device"] == "cpu:0", "each built alone"
    moved = [name for name in ("a", "b") if records[f"train_{name}"]["device"] == "cpu:1"]
    assert len(moved) == 1 and two_device_worker["seen"][f"seen_{moved[0]}"]["variables"] == variables_on("cpu:1")


def test_a_fans_out_node_runs_a_task_per_device_each_on_its_own_in_a_thread_of_its_own(two_device_worker):
    records = {record["node"]: record for record in two_device_worker["records"]}
    assert records["fan_out"]["device"] is None, "the node itself holds no device while its tasks run"
    tasks = two_device_worker["seen"]["fanned"]["tasks"]
    assert sorted(task["device"] for task in tasks) == ["cpu:0", "cpu:1"]
    for task in tasks:
        assert task["variables"] == variables_on(task["device"])


def test_a_model_built_under_a_strategy_keeps_its_devices(two_device_worker):
    records = {record["node"]: record for record in two_device_worker["records"]}
    assert records["use_mirrored"]["device"] is None, "not placed: the strategy's devices are the recipe's"
    assert two_device_worker["seen"]["mirrored"] == {"strategy": "MirroredStrategy", "built_under_strategy": True}


def test_a_model_made_on_one_device_moves_to_another_with_its_weights_and_compiled_loss(two_device_worker):
    moved = two_device_worker["moved"]
    assert moved["before"] == variables_on("cpu:0")
    assert moved["after"] == variables_on("cpu:1")
    assert moved["same_weights"] is True
    assert moved["loss"] == "mse"


def test_a_call_in_a_run_logs_into_it_from_a_thread_of_its_own_and_leaves_it_running(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("runs")
    first, second, ended = (client.create_run(experiment).info.run_id for _ in range(3))
    client.set_terminated(ended, "FAILED")

    def log(value: float) -> str:
        mlflow.log_metric("m", value)
        return mlflow.active_run().info.run_id

    try:
        assert in_run(RunLink(uri, first), log, 1.0) == first
        assert in_run(RunLink(uri, second), log, 2.0) == second
        assert in_run(RunLink(uri, first), log, 3.0) == first
        assert mlflow.active_run() is None, "the caller's thread has no run left active"
        with pytest.raises(RunEnded, match="FAILED"):
            in_run(RunLink(uri, ended), log, 4.0)
        with mlflow.start_run(run_id=second):  # already this thread's run: a plain call
            assert in_run(RunLink(uri, second), log, 5.0) == second
    finally:
        mlflow.set_tracking_uri(None)
    assert [m.value for m in client.get_metric_history(first, "m")] == [1.0, 3.0]
    assert [m.value for m in client.get_metric_history(second, "m")] == [2.0, 5.0]
    assert client.get_metric_history(ended, "m") == []
    assert client.get_run(first).info.status == "RUNNING" and client.get_run(ended).info.status == "FAILED"


def test_a_nested_run_started_where_no_experiment_is_active_goes_to_its_parents_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    parent = client.create_run(client.create_experiment("cifar10")).info.run_id

    def trial() -> str:  # as a search worker on a Dask worker, which never set an experiment
        with start_nested_run("trial_0", {"optuna.trial_number": "0"}) as run:
            return run.info.run_id

    try:
        child = client.get_run(in_run(RunLink(uri, parent), trial))
    finally:
        mlflow.set_tracking_uri(None)
    assert child.info.experiment_id == client.get_run(parent).info.experiment_id != "0"
    assert child.data.tags["mlflow.parentRunId"] == parent
