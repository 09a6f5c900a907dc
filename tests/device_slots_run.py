"""Two trainings at once on one Dask worker with two threads and two devices, through the DaskRunner.

Run by tests/test_runner.py in a subprocess, because TensorFlow's devices must be set before it starts:
the CPU is split into two logical devices (as a host's two GPUs would be) and the worker is told to
spread its nodes over them (`CONVBENCH_WORKER_DEVICES`). Each model is built by one node and trained by
another, and each training waits for the other to start, so both run on the worker's two threads at once.
Writes what each training saw, the runner's node records and a model moved from one device to the
other (`on_device`), as JSON to argv[1].
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import tensorflow as tf

[CPU] = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from distributed import LocalCluster  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import Pipeline, node  # noqa: E402
from kedro_datasets.json import JSONDataset  # noqa: E402

from convbench import runner  # noqa: E402

RENDEZVOUS_ENV = "DEVICE_SLOTS_RENDEZVOUS"  # a folder where each training says it has started


def wait_for_each_other(name: str, timeout_s: float = 120.0) -> None:
    """Returns once both trainings have started (a file each; the nodes are pickled, so no lock is shared)."""
    folder = Path(os.environ[RENDEZVOUS_ENV])
    (folder / name).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"training {name} waited {timeout_s:.0f} s for the other one to start")
        time.sleep(0.05)


def build() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def train(model: keras.Model, name: str) -> dict:
    wait_for_each_other(name)
    model.fit(np.ones((16, 4), "float32"), np.zeros((16, 3), "float32"), epochs=2, batch_size=4, verbose=0)
    return {
        "variables": sorted({variable.value.device for variable in model.weights}),
        "optimizer": sorted({variable.value.device for variable in model.optimizer.variables}),
        "thread": threading.get_ident(),
    }


def moved_model() -> dict:
    """A compiled model built on cpu:0, moved to cpu:1 by `on_device`: where its variables are, and whether
    it kept its weights and its compiled loss."""
    with keras.device("cpu:0"):
        model = build()
    moved = runner.on_device(model, "cpu:1")
    return {
        "before": sorted({variable.value.device for variable in model.weights}),
        "after": sorted({variable.value.device for variable in moved.weights}),
        "same_weights": all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), moved.get_weights(), strict=True)
        ),
        "loss": moved.loss,
    }


def main(out: Path) -> None:
    os.environ[runner.WORKER_DEVICES_ENV] = "cpu:0,cpu:1"
    os.environ[RENDEZVOUS_ENV] = str(out.parent / "started")
    (out.parent / "started").mkdir()
    records: list[dict] = []
    runner.log_node_runs = records.extend
    datasets = {}
    nodes = []
    for name in ("a", "b"):
        datasets[f"model_{name}"] = MemoryDataset(copy_mode="assign")
        datasets[f"seen_{name}"] = JSONDataset(filepath=str(out.parent / f"seen_{name}.json"))
        nodes += [
            node(build, None, f"model_{name}", name=f"build_{name}"),
            node(train, [f"model_{name}", f"params:{name}"], f"seen_{name}", name=f"train_{name}"),
        ]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        hook_manager, _ = runner.node_process_hook_manager()
        catalog = DataCatalog(datasets)
        for name in ("a", "b"):
            catalog[f"params:{name}"] = name
        runner.DaskRunner(address=cluster.scheduler_address).run(Pipeline(nodes), catalog, hook_manager)
    seen = {name: json.loads((out.parent / f"seen_{name}.json").read_text()) for name in ("a", "b")}
    out.write_text(json.dumps({"records": records, "seen": seen, "moved": moved_model()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
