"""Nodes and a search-like fan-out on one Dask worker with two threads and two devices, through the DaskRunner.

Run by tests/test_runner.py in a subprocess, because TensorFlow's devices must be set before it starts:
the CPU is split into two logical devices (as a host's two GPUs would be) and the worker is told to
spread its work over them (`CONVBENCH_WORKER_DEVICES`). Inside an MLflow run (so every node runs in a
thread of its own, `tracking.in_run`):
- `build_a` then `build_b`, one after the other, each alone on the worker, so both build on cpu:0;
- `train_a` and `train_b` at once (each waits for the other to start), so one of them trains on cpu:1
  a model built on cpu:0;
- `fan_out` (tagged `fans_out`, like a search) after them: one task per device, each in a thread of its
  own like a search worker's trials, the two at once;
- last, a model built under a two-device MirroredStrategy, handed to `use_mirrored`.
Writes what each saw, the runner's node records and a model moved by `on_device`, as JSON to argv[1].
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
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from distributed import LocalCluster  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset  # noqa: E402
from kedro.pipeline import Pipeline, node  # noqa: E402
from kedro_datasets.json import JSONDataset  # noqa: E402

from convbench import runner  # noqa: E402
from convbench.tracking import active_run_link, in_run  # noqa: E402

RENDEZVOUS_ENV = "DEVICE_SLOTS_RENDEZVOUS"  # a folder with a subfolder per group of tasks that must overlap


def wait_for_each_other(group: str, name: str, timeout_s: float = 120.0) -> None:
    """Returns once both members of `group` have started (a file each: the tasks are pickled, no lock is shared)."""
    folder = Path(os.environ[RENDEZVOUS_ENV]) / group
    folder.mkdir(exist_ok=True)
    (folder / name).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} {name} waited {timeout_s:.0f} s for the other one to start")
        time.sleep(0.05)


def devices_of(variables) -> list[str]:
    return sorted({variable.value.device for variable in variables})


def build() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def build_first() -> tuple[keras.Model, bool]:
    return build(), True


def build_second(first_built: bool) -> tuple[keras.Model, bool]:
    return build(), first_built


def train(model: keras.Model, name: str, both_built: bool) -> dict:
    wait_for_each_other("train", name)
    model.fit(np.ones((16, 4), "float32"), np.zeros((16, 3), "float32"), epochs=2, batch_size=4, verbose=0)
    return {
        "variables": devices_of(model.weights),
        "optimizer": devices_of(model.optimizer.variables),
        "thread": threading.get_ident(),
    }


def trial_like(index: int, link) -> dict:
    """A search worker's shape: its training runs in a thread of its own (`in_run`), entering the device there."""

    def in_its_thread() -> dict:
        wait_for_each_other("fan_out", str(index))
        with runner.on_placed_device() as device:
            return {"device": device, "variables": devices_of(build().weights)}

    return in_run(link, in_its_thread)


def fan_out(seen_a: dict, seen_b: dict) -> dict:
    return {"tasks": runner.on_every_worker(trial_like, active_run_link())}


def build_mirrored(fanned: dict) -> keras.Model:
    with tf.distribute.MirroredStrategy(["cpu:0", "cpu:1"]).scope():
        return build()


def use_mirrored(model: keras.Model) -> dict:
    return {
        "strategy": type(model.distribute_strategy).__name__,
        "built_under_strategy": runner.built_under_strategy(model),
    }


def moved_model() -> dict:
    """A compiled model built on cpu:0, moved to cpu:1 by `on_device`: where its variables are, and whether
    it kept its weights and its compiled loss."""
    with keras.device("cpu:0"):
        model = build()
    moved = runner.on_device(model, "cpu:1")
    return {
        "before": devices_of(model.weights),
        "after": devices_of(moved.weights),
        "same_weights": all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), moved.get_weights(), strict=True)
        ),
        "loss": moved.loss,
    }


def pipeline() -> Pipeline:
    return Pipeline(
        [
            node(build_first, None, ["model_a", "a_built"], name="build_a"),
            node(build_second, "a_built", ["model_b", "both_built"], name="build_b"),
            node(train, ["model_a", "params:a", "both_built"], "seen_a", name="train_a"),
            node(train, ["model_b", "params:b", "both_built"], "seen_b", name="train_b"),
            node(fan_out, ["seen_a", "seen_b"], "fanned", name="fan_out", tags=[runner.FANS_OUT_TAG]),
            node(build_mirrored, "fanned", "mirrored_model", name="build_mirrored"),
            node(use_mirrored, "mirrored_model", "mirrored", name="use_mirrored"),
        ]
    )


def main(out: Path) -> None:
    os.environ[runner.WORKER_DEVICES_ENV] = "cpu:0,cpu:1"
    os.environ[RENDEZVOUS_ENV] = str(out.parent / "started")
    (out.parent / "started").mkdir()
    records: list[dict] = []
    runner.log_node_runs = records.extend
    written = ("seen_a", "seen_b", "fanned", "mirrored")
    catalog = DataCatalog(
        {
            **{name: MemoryDataset(copy_mode="assign") for name in ("model_a", "model_b", "mirrored_model")},
            **{name: JSONDataset(filepath=str(out.parent / f"{name}.json")) for name in written},
        }
    )
    catalog["params:a"], catalog["params:b"] = "a", "b"
    mlflow.set_tracking_uri(f"sqlite:///{out.parent / 'mlflow.db'}")
    with (
        mlflow.start_run(),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
    ):
        hook_manager, _ = runner.node_process_hook_manager()
        runner.DaskRunner(address=cluster.scheduler_address).run(pipeline(), catalog, hook_manager)
    seen = {name: json.loads((out.parent / f"{name}.json").read_text()) for name in written}
    out.write_text(json.dumps({"records": records, "seen": seen, "moved": moved_model()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
