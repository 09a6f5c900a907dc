"""Benchmark: training throughput (images/s) of the project's input pipeline + model versus a bare ``model.fit``.

Run from the project root:

    .venv/bin/python benchmarks/bench_training_throughput.py [--images N] [--repeats R]

Same ResNet-20 (``with_normalization(build_resnet(...))`` with the ``training.resnet`` recipe of
``conf/base/parameters_training.yml``), on synthetic CIFAR-shaped data (uint8 ``[N, 32, 32, 3]``,
integer labels), timed one epoch at a time, interleaved in one process:

* ``convbench``: what ``convbench.training.fit.fit`` trains, i.e. the model wrapped and compiled by
  ``compile_for_training`` (recipe optimiser and schedule, loss, accuracy metric, ``jit_compile``,
  on-device augmentation: random pad-crop + horizontal flip), fed by ``training_dataset``
  (seeded per-epoch shuffle, index-gather batches, one-hot labels);
* ``convbench, no augmentation``: the same with the recipe's ``augmentation: {}``, to show what the
  augmentation itself costs;
* ``bare fit``: the same model compiled with the same optimiser, loss, metric and ``jit_compile``,
  no augmentation, ``model.fit(x, y_onehot, batch_size=..., shuffle=False)`` on in-memory
  ``tf.constant`` tensors: the upper bound the pipeline is compared to.

Each path is first warmed up by one short fit (tracing and XLA compilation are not timed, the
warm-up also covers the shape of a partial last batch). Then, for every repeat, each path fits
one epoch; the order of the paths rotates from repeat to repeat. It prints the machine, the
command line and a Markdown table of the median images/s and the ratio to the bare fit (target
for ``convbench``: >= 0.95). It asserts nothing.

``--diagnose`` adds rows that separate the pipeline's cost from the augmentation's (see
``DIAGNOSTIC_PATHS``).
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
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from convbench.models.preprocessing import with_normalization  # noqa: E402
from convbench.models.resnet import build_resnet  # noqa: E402
from convbench.training.fit import compile_for_training  # noqa: E402
from convbench.training.input_pipeline import training_dataset  # noqa: E402
from convbench.training.optimizers import learning_rate_schedule, make_optimizer  # noqa: E402

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
    schedule = learning_rate_schedule(recipe["schedule"], recipe["epochs"], steps_per_epoch)
    model.compile(
        optimizer=make_optimizer(recipe["optimizer"], schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(recipe.get("label_smoothing", 0.0))),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=recipe.get("jit_compile", "auto"),
    )
    return model


class Path_:
    """One way of training: a compiled model and how to fit it for one epoch on the first `n` images."""

    def __init__(self, name: str, model: keras.Model, fit_epoch: Callable[[int], None]) -> None:
        self.name = name
        self.model = model
        self.fit_epoch = fit_epoch
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []


def make_paths(
    images: np.ndarray, labels: np.ndarray, recipe: dict[str, Any], batch_size: int, diagnose: bool
) -> list[Path_]:
    count = len(images)
    steps_per_epoch = -(-count // batch_size)
    seed = int(recipe.get("seed", 0))
    mean = images.reshape(-1, 3).mean(axis=0) if count else np.zeros(3)
    std = images.reshape(-1, 3).std(axis=0) if count else np.ones(3)
    x_all = tf.constant(images)
    y_all = tf.constant(keras.utils.to_categorical(labels, NUM_CLASSES).astype("float32"))
    no_aug = {**recipe, "augmentation": {}}

    def pipeline_fit(model: keras.Model) -> Callable[[int], None]:
        def fit_epoch(n: int) -> None:
            dataset = training_dataset(images[:n], labels[:n], NUM_CLASSES, batch_size, seed)
            model.fit(dataset, epochs=1, verbose=0, shuffle=False)

        return fit_epoch

    def tensor_fit(model: keras.Model) -> Callable[[int], None]:
        def fit_epoch(n: int) -> None:
            model.fit(x_all[:n], y_all[:n], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

        return fit_epoch

    keras.utils.set_random_seed(seed)
    paths = []
    model = compile_bare(project_model(recipe, mean, std), recipe, steps_per_epoch)
    paths.append(Path_("bare fit (in-memory tensors, no augmentation)", model, tensor_fit(model)))
    model = compile_for_training(project_model(recipe, mean, std), recipe, steps_per_epoch)
    paths.append(Path_("convbench (training_dataset + compile_for_training)", model, pipeline_fit(model)))
    model = compile_for_training(project_model(recipe, mean, std), no_aug, steps_per_epoch)
    paths.append(Path_("convbench, no augmentation", model, pipeline_fit(model)))
    if diagnose:
        paths += diagnostic_paths(images, labels, recipe, batch_size, steps_per_epoch, mean, std, x_all, y_all)
    return paths


def diagnostic_paths(images, labels, recipe, batch_size, steps_per_epoch, mean, std, x_all, y_all) -> list[Path_]:
    """Extra rows that take the convbench path apart (only with --diagnose)."""
    seed = int(recipe.get("seed", 0))
    paths = []

    # The augmenting model fed by in-memory tensors: the augmentation's cost without the tf.data pipeline.
    model = compile_for_training(project_model(recipe, mean, std), recipe, steps_per_epoch)

    def aug_tensor_fit(n: int, model=model) -> None:
        model.fit(x_all[:n], y_all[:n], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    paths.append(Path_("diag: augmenting model on in-memory tensors", model, aug_tensor_fit))

    # Same as convbench but without XLA, to see what jit_compile contributes.
    for jit in (False, True):
        if jit == recipe.get("jit_compile"):
            continue
        recipe_jit = {**recipe, "jit_compile": jit}
        model = compile_for_training(project_model(recipe, mean, std), recipe_jit, steps_per_epoch)

        def jit_fit(n: int, model=model) -> None:
            model.fit(training_dataset(images[:n], labels[:n], NUM_CLASSES, batch_size, seed), epochs=1, verbose=0, shuffle=False)

        paths.append(Path_(f"diag: convbench, jit_compile={jit}", model, jit_fit))
    return paths


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
    parser.add_argument(
        "--batch-size", type=int, default=int(recipe["batch_size"]), help=f"default: the recipe's, {recipe['batch_size']}"
    )
    parser.add_argument("--diagnose", action="store_true", help="add rows that take the convbench path apart")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--images, --repeats, --steps and --batch-size must be positive")

    images, labels = synthetic_data(args.images)
    paths = make_paths(images, labels, recipe, args.batch_size, args.diagnose)

    # Warm-up: full batches plus the partial last batch, if any, so XLA has compiled every shape.
    warm = min(args.images, args.steps * args.batch_size + args.images % args.batch_size)
    for path in paths:
        started = time.perf_counter()
        path.fit_epoch(warm)
        print(f"warm-up {path.name}: {time.perf_counter() - started:.1f} s, jit_compile={path.model.jit_compile}")

    for repeat in range(args.repeats):
        shift = repeat % len(paths)
        for path in paths[shift:] + paths[:shift]:
            started, cpu_started = time.perf_counter(), time.process_time()
            path.fit_epoch(args.images)
            path.seconds.append(time.perf_counter() - started)
            path.cpu_seconds.append(time.process_time() - cpu_started)
            print(f"repeat {repeat + 1}: {path.name}: {path.seconds[-1]:.2f} s, {path.cpu_seconds[-1]:.2f} CPU-s")

    rate = {path.name: args.images / statistics.median(path.seconds) for path in paths}
    bare = rate[paths[0].name]
    print()
    print("\n".join(machine()))
    print(
        f"- data: {args.images} synthetic uint8 images 32x32x3, batch size {args.batch_size}, "
        f"ResNet-{recipe['model']['depth']}, augmentation {recipe['augmentation']}, jit_compile {recipe.get('jit_compile')!r}"
    )
    print()
    print(f"| path | images/s (median of {args.repeats}) | ratio vs bare fit |")
    print("|---|---:|---:|")
    for path in paths:
        spread = f" (min {args.images / max(path.seconds):.0f}, max {args.images / min(path.seconds):.0f})"
        print(f"| {path.name} | {rate[path.name]:.0f}{spread} | {rate[path.name] / bare:.3f} |")
    # Wall-clock rates suffer from anything else running on the machine; this process's CPU time
    # per image much less so (if it is close across paths while the wall rates differ, that is noise).
    cpu = {path.name: 1e3 * statistics.median(path.cpu_seconds) / args.images for path in paths}
    print()
    print(f"| path | CPU ms per image, this process (median of {args.repeats}) | ratio bare fit / path |")
    print("|---|---:|---:|")
    for path in paths:
        print(f"| {path.name} | {cpu[path.name]:.2f} | {cpu[paths[0].name] / cpu[path.name]:.3f} |")


if __name__ == "__main__":
    main()
