"""Benchmark: training throughput (images/s) of the project's input pipeline + model versus a bare ``model.fit``.

Run from the project root:

    .venv/bin/python benchmarks/bench_training_throughput.py [--images N] [--repeats R] [--diagnose]

Same ResNet-20 (``with_normalization(build_resnet(...))`` with the ``training.resnet`` recipe of
``conf/base/parameters_training.yml``), on synthetic CIFAR-shaped data (uint8 ``[N, 32, 32, 3]``,
integer labels), timed one epoch (one ``fit`` call) at a time, interleaved in one process:

* ``bare fit``: the model compiled with the recipe's optimiser (and schedule), loss, accuracy
  metric and ``jit_compile``, no augmentation, ``model.fit(x, y_onehot, batch_size=...,
  shuffle=False)`` on in-memory ``tf.constant`` tensors: the upper bound the pipeline is compared to;
* ``convbench``: what ``convbench.training.fit.fit`` trains, i.e. the model wrapped and compiled by
  ``compile_for_training`` (on-device augmentation: random pad-crop + horizontal flip), fed by
  ``training_dataset`` (seeded per-epoch shuffle, index-gather batches, one-hot labels);
* ``convbench, no augmentation``: the same with the recipe's ``augmentation: {}``, to show what the
  augmentation itself costs.

``--diagnose`` adds rows that take the convbench path apart: the augmenting model on in-memory
tensors (augmentation without the tf.data pipeline), the other ``jit_compile`` setting, and the
convbench pipeline with tf.data autotuning switched off (``tf.data.Options().autotune.enabled =
False``; ``training_dataset`` does this itself since this benchmark found the stall below, so the
row now equals the convbench row), and that plus the augmentation done on the uint8 batch as one pad
and two gathers (``FusedPadCropFlip``, a candidate, not what ``src/`` does).

Each path is first warmed up by one short fit (tracing and XLA compilation are not timed; the
warm-up also covers the shape of a partial last batch). Then, for every repeat, each path fits
one epoch; the order of the paths rotates from repeat to repeat. Three figures per path:

* images/s of the whole ``fit`` call, what a user waits for (median of the repeats, min and max);
* images/s of the train steps alone, from the first batch's start to the last batch's end (a
  callback); the difference to the first is per-``fit`` overhead, mostly tf.data iterator teardown
  (with autotuning on and the CPU busy it waits for tf.data's autotune thread to wake up, which
  happens at 10 ms * (2^k - 1) of the iterator's age: epochs quantise to 10.2, 20.5, 41 s, ...);
* CPU ms per image of this process, which other load on the machine disturbs less than the
  wall clock (on a shared machine compare these when the wall-clock rows disagree).

It prints the machine, the command line and a Markdown table, with ratios to the bare fit (target
for ``convbench``: >= 0.95). It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
import yaml

from convbench.models.preprocessing import with_normalization
from convbench.models.resnet import build_resnet
from convbench.training.compiling import compile_for_training, compile_model
from convbench.training.input_pipeline import training_dataset

PARAMETERS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_training.yml"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


def load_recipe() -> dict[str, Any]:
    with PARAMETERS.open() as f:
        return yaml.safe_load(f)["training"]["resnet"]


def synthetic_data(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=count).astype(np.int64)
    return images, labels


def project_model(recipe: dict[str, Any], mean: np.ndarray, std: np.ndarray) -> keras.Model:
    """The served model exactly as the project builds it: uint8 in, z-score, ResNet."""
    return with_normalization(build_resnet(IMAGE_SHAPE, NUM_CLASSES, **recipe["model"]), mean, std)


def compile_bare(model: keras.Model, recipe: dict[str, Any], steps_per_epoch: int) -> keras.Model:
    """Same optimiser (and schedule), loss, metric and jit_compile as `compile_for_training`, no wrapper."""
    return compile_model(model, recipe, steps_per_epoch)


class StepSpan(keras.callbacks.Callback):
    """Wall time from the first train batch's start to the last one's end."""

    def on_train_begin(self, logs=None):
        self.first = self.last = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.last - self.first


class FusedPadCropFlip(keras.layers.Layer):
    """Diagnosis only, a candidate for `convbench.training.augmentation`: pad-crop and horizontal flip
    as one pad and two index gathers on the uint8 batch (the flip folded into the column indices),
    instead of float32 `RandomPadCrop` followed by Keras' `RandomFlip` (flip + select over the batch)."""

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = padding
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        p = self.padding
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]])
        offset_y = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        offset_x = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        flip = keras.random.randint((batch, 1), 0, 2, seed=self.seed_generator, dtype="int32") > 0
        columns = tf.range(width)[None, :]
        rows = offset_y[:, None] + tf.range(height)[None, :]
        cols = offset_x[:, None] + tf.where(flip, width - 1 - columns, columns)
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, cols, axis=2, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return input_shape


@dataclass
class Run:
    """One way of training: a compiled model, how to fit it one epoch on the first `n` images, its timings."""

    name: str
    model: keras.Model
    fit_epoch: Callable[[int, list], None]
    seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)


def make_runs(
    images: np.ndarray, labels: np.ndarray, recipe: dict[str, Any], batch_size: int, diagnose: bool
) -> list[Run]:
    count = len(images)
    steps_per_epoch = -(-count // batch_size)
    seed = int(recipe.get("seed", 0))
    mean = images.reshape(-1, 3).mean(axis=0)
    std = images.reshape(-1, 3).std(axis=0)
    x_all = tf.constant(images)
    y_all = tf.constant(keras.utils.to_categorical(labels, NUM_CLASSES).astype("float32"))

    def pipeline_fit(model: keras.Model, options: tf.data.Options | None = None):
        def fit_epoch(n: int, callbacks: list) -> None:
            dataset = training_dataset(images[:n], labels[:n], NUM_CLASSES, batch_size, seed)
            if options is not None:
                dataset = dataset.with_options(options)
            model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)

        return fit_epoch

    def tensor_fit(model: keras.Model):
        def fit_epoch(n: int, callbacks: list) -> None:
            model.fit(
                x_all[:n], y_all[:n], batch_size=batch_size, epochs=1, verbose=0, shuffle=False, callbacks=callbacks
            )

        return fit_epoch

    def convbench(recipe_: dict[str, Any]) -> keras.Model:
        return compile_for_training(project_model(recipe_, mean, std), recipe_, steps_per_epoch)

    keras.utils.set_random_seed(seed)
    runs = []
    model = compile_bare(project_model(recipe, mean, std), recipe, steps_per_epoch)
    runs.append(Run("bare fit (in-memory tensors, no augmentation)", model, tensor_fit(model)))
    model = convbench(recipe)
    runs.append(Run("convbench (training_dataset + compile_for_training)", model, pipeline_fit(model)))
    model = convbench({**recipe, "augmentation": {}})
    runs.append(Run("convbench, no augmentation", model, pipeline_fit(model)))
    if not diagnose:
        return runs

    model = convbench(recipe)
    runs.append(Run("diag: augmenting model on in-memory tensors (no tf.data pipeline)", model, tensor_fit(model)))
    resolved_jit = bool(runs[1].model.jit_compile)  # "auto" resolved by Keras (False on CPU)
    model = convbench({**recipe, "jit_compile": not resolved_jit})
    runs.append(Run(f"diag: convbench, jit_compile={not resolved_jit}", model, pipeline_fit(model)))
    options = tf.data.Options()
    options.autotune.enabled = False
    model = convbench(recipe)
    runs.append(Run("diag: convbench, tf.data autotune off (candidate fix)", model, pipeline_fit(model, options)))
    inner = project_model(recipe, mean, std)
    inputs = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="image")
    pad = int(recipe["augmentation"].get("pad_crop", 4))
    augmenting = keras.Model(inputs, inner(FusedPadCropFlip(pad, seed=seed, name="pad_crop_flip")(inputs)))
    model = compile_for_training(augmenting, {**recipe, "augmentation": {}}, steps_per_epoch)
    name = "diag: both candidate fixes (autotune off + uint8 pad-crop+flip in one gather)"
    runs.append(Run(name, model, pipeline_fit(model, options)))
    return runs


def machine() -> list[str]:
    devices = ", ".join(f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices())
    return [
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs",
        f"- Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"- devices: {devices}",
        f"- command: {shlex.join([sys.executable, *sys.argv])}",
    ]


def main(argv: list[str] | None = None) -> None:
    recipe = load_recipe()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5_120, help="images per timed epoch (default 5,120)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per path (default 3)")
    parser.add_argument("--steps", type=int, default=3, help="warm-up steps per path (default 3)")
    batch_size = int(recipe["batch_size"])
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"default: the recipe's, {batch_size}")
    parser.add_argument("--diagnose", action="store_true", help="add rows that take the convbench path apart")
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.steps, args.batch_size) < 1:
        parser.error("--images, --repeats, --steps and --batch-size must be positive")

    images, labels = synthetic_data(args.images)
    runs = make_runs(images, labels, recipe, args.batch_size, args.diagnose)

    # Warm-up: full batches plus the partial last batch, if any, so every shape is traced/compiled.
    warm = min(args.images, args.steps * args.batch_size + args.images % args.batch_size)
    for run in runs:
        started = time.perf_counter()
        run.fit_epoch(warm, [])
        print(f"warm-up {run.name}: {time.perf_counter() - started:.1f} s, jit_compile={run.model.jit_compile}")

    span = StepSpan()
    for repeat in range(args.repeats):
        shift = repeat % len(runs)
        for run in runs[shift:] + runs[:shift]:
            started, cpu_started = time.perf_counter(), time.process_time()
            run.fit_epoch(args.images, [span])
            run.seconds.append(time.perf_counter() - started)
            run.cpu_seconds.append(time.process_time() - cpu_started)
            run.step_seconds.append(span.seconds)
            print(
                f"repeat {repeat + 1}: {run.name}: fit {run.seconds[-1]:.2f} s, "
                f"steps {run.step_seconds[-1]:.2f} s, {run.cpu_seconds[-1]:.2f} CPU-s"
            )

    def rate(seconds: list[float]) -> float:
        return args.images / statistics.median(seconds)

    bare = runs[0]
    print()
    print("\n".join(machine()))
    print(
        f"- data: {args.images} synthetic uint8 images 32x32x3, batch size {args.batch_size}, "
        f"ResNet-{recipe['model']['depth']}, augmentation {recipe['augmentation']}, "
        f"jit_compile {recipe.get('jit_compile')!r} (resolved: {bare.model.jit_compile})"
    )
    print()
    r = args.repeats
    print(
        f"| path | images/s (median of {r}) | ratio vs bare fit "
        f"| images/s, train steps only (median of {r}) | ratio vs bare fit | CPU ms per image (median of {r}) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        spread = f" (min {args.images / max(run.seconds):.0f}, max {args.images / min(run.seconds):.0f})"
        print(
            f"| {run.name} | {rate(run.seconds):.0f}{spread} | {rate(run.seconds) / rate(bare.seconds):.3f} "
            f"| {rate(run.step_seconds):.0f} | {rate(run.step_seconds) / rate(bare.step_seconds):.3f} "
            f"| {1e3 * statistics.median(run.cpu_seconds) / args.images:.2f} |"
        )


if __name__ == "__main__":
    main()
