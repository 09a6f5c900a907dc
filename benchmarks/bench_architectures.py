"""Benchmark: size and forward+backward speed (images/s) of every registered architecture.

Run from the project root:

    .venv/bin/python benchmarks/bench_architectures.py [--batch-size 64] [--steps 5] [--only resnet,vgg16]

Each architecture is built as a training run builds it: the builder registered in
``convbench.models.registry`` with the hyperparameters of its recipe (``training.<name>.model`` in
``conf/base/parameters_training.yml``), wrapped by ``with_normalization`` (raw uint8 CIFAR-shaped
input, 10 classes), compiled with the recipe's optimiser, schedule, loss and ``jit_compile``.
Then, on one synthetic batch held in memory, ``train_on_batch`` is called: twice untimed (tracing,
compilation), then ``--steps`` times timed. The figure is the median step's images/s, forward
and backward pass and the optimiser update together, without input pipeline or augmentation.

Architectures are timed one after the other in one process, and each row also gives its speed
relative to ResNet-20 (``resnet``), because absolute figures move with the machine's load.
Transfer recipes (``weights: imagenet``) are timed with the same model reading a stand-in weights
file of random values (``tests/imagenet_weights.py``; nothing is downloaded). It prints the machine, the command line and a Markdown table; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from kedro.config import OmegaConfigLoader

from convbench.models.preprocessing import with_normalization
from convbench.models.registry import ARCHITECTURES, get_builder
from convbench.training.compiling import compile_model
from convbench.training.fit import trainable_parameters

CONF = Path(__file__).resolve().parents[1] / "conf"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
REFERENCE = "resnet"


def recipes() -> dict[str, dict[str, Any]]:
    """The `training` recipes of conf/base, as a Kedro run reads them."""
    return OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base")["parameters"]["training"]


def build(name: str, recipe: dict[str, Any]) -> keras.Model:
    hyperparameters = dict(recipe.get("model") or {})
    if hyperparameters.get("weights") == "imagenet":
        hyperparameters["weights_file"] = stand_in_imagenet_weights(hyperparameters)
    backbone = get_builder(name)(IMAGE_SHAPE, NUM_CLASSES, **hyperparameters)
    return with_normalization(backbone, [125.0] * 3, [63.0] * 3, name=backbone.name)


def stand_in_imagenet_weights(hyperparameters: dict[str, Any]) -> Path:
    """A MobileNetV2 ImageNet-format weights file of random values, in a temporary folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from imagenet_weights import write_mobilenet_v2_weights

    path = Path(tempfile.mkdtemp(prefix="convbench-bench-")) / "mobilenet_v2_no_top.h5"
    return write_mobilenet_v2_weights(path, hyperparameters.get("alpha", 1.0), hyperparameters.get("input_size", 96))


def time_architecture(name: str, recipe: dict[str, Any], batch_size: int, steps: int) -> dict[str, Any]:
    keras.utils.set_random_seed(0)
    model = compile_model(build(name, recipe), recipe, steps_per_epoch=100)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (batch_size, *IMAGE_SHAPE), dtype=np.uint8))
    labels = tf.constant(keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, batch_size), NUM_CLASSES))
    start = time.perf_counter()
    for _ in range(2):
        model.train_on_batch(images, labels)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(images, labels)
        times.append(time.perf_counter() - start)
    return {
        "architecture": name,
        "model": model.name,
        "parameters": trainable_parameters(model),
        "images_per_s": batch_size / statistics.median(times),
        "warmup_s": warmup_s,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpus = tf.config.list_physical_devices("GPU")
    device = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {device or 'CPU only'}, Python {platform.python_version()}, "
        f"TF {tf.__version__}, Keras {keras.__version__}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", help="comma-separated architecture names (default: all registered)")
    args = parser.parse_args(argv)
    all_recipes = recipes()
    names = args.only.split(",") if args.only else list(ARCHITECTURES)
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    rows = []
    for name in names:
        row = time_architecture(name, all_recipes[name], args.batch_size, args.steps)
        print(f"{name}: {row['parameters']:,} parameters, {row['images_per_s']:.1f} images/s", file=sys.stderr)
        rows.append(row)
    reference = next(row["images_per_s"] for row in rows if row["architecture"] == REFERENCE)
    print(f"\nmachine: {machine()}")
    print(f"command: python benchmarks/bench_architectures.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"batch {args.batch_size}, median of {args.steps} steps after 2 untimed\n")
    print("| architecture | model | trainable parameters | images/s (fwd+bwd) | vs ResNet-20 | warm-up s |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['architecture']} | {row['model']} | {row['parameters']:,} | {row['images_per_s']:,.1f} | "
            f"{row['images_per_s'] / reference:.2f} | {row['warmup_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
