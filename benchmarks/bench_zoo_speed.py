"""Benchmark: training speed of architectures side by side, against their arithmetic (FLOPs).

Run from the project root:

    .venv/bin/python benchmarks/bench_zoo_speed.py [--only resnet,preact_resnet,inception,...] \\
        [--batch-size 64] [--steps 2] [--rounds 3]

Every architecture is built as a run builds it (`build_model` with its recipe's hyperparameters,
raw uint8 CIFAR-shaped input, 10 classes) and compiled with its recipe (`compile_model`). After 2
untimed `train_on_batch` steps (tracing), `--rounds` rounds follow in which every architecture takes
`--steps` timed steps in turn, so a change in the machine's load hits all alike. Per architecture:
the median step's images/s, its forward multiply-adds per image (every Conv2D, DepthwiseConv2D and
Dense layer, counted from its output shape), and the achieved arithmetic rate, 2 x 3 x MACs x
images/s (forward and backward): an architecture whose rate is far below ResNet-20's pays for
something other than its arithmetic. It prints the machine, the command and a Markdown table; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from bench_architectures import machine, recipes
from bench_precision import compiled

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
REFERENCE = "resnet"


def multiply_adds(model: keras.Model) -> int:
    """Forward multiply-adds of one image through `model`'s convolutions and dense layers (nested models too)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
            continue
        try:
            output_shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            total += int(np.prod(output_shape[1:])) * kernel
        elif isinstance(layer, keras.layers.SeparableConv2D):
            height, width, filters = output_shape[1:]
            channels = layer.input.shape[-1]
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            total += height * width * channels * (kernel * layer.depth_multiplier) + height * width * channels * filters
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            channels = layer.input.shape[-1] // layer.groups
            total += int(np.prod(output_shape[1:])) * kernel * channels
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(output_shape[1:])) * layer.input.shape[-1]
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="resnet,preact_resnet,inception,xception,densenet,mobilenet_v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per architecture and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    names = args.only.split(",")
    all_recipes = recipes()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch_size, *IMAGE_SHAPE), dtype=np.uint8))
    labels = tf.constant(keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, args.batch_size), NUM_CLASSES))
    models, macs, times = {}, {}, {name: [] for name in names}
    for name in names:
        models[name] = compiled(name, all_recipes[name], {})
        macs[name] = multiply_adds(models[name])
        for _ in range(2):
            models[name].train_on_batch(images, labels)
        print(f"{name}: built, {macs[name] / 1e6:.1f} M multiply-adds per image", file=sys.stderr, flush=True)
    for _ in range(args.rounds):
        for name in names:
            for _ in range(args.steps):
                started = time.perf_counter()
                models[name].train_on_batch(images, labels)
                times[name].append(time.perf_counter() - started)
    speed = {name: args.batch_size / statistics.median(times[name]) for name in names}
    rate = {name: 6 * macs[name] * speed[name] / 1e9 for name in names}
    print(f"\nmachine: {machine()}")
    print(f"command: python benchmarks/bench_zoo_speed.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"batch {args.batch_size}, median of {args.rounds} x {args.steps} interleaved steps after 2 untimed\n")
    print(
        "| architecture | M multiply-adds / image | images/s (fwd+bwd) | vs ResNet-20 | GFLOP/s achieved | rate vs ResNet-20 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        reference = REFERENCE if REFERENCE in speed else names[0]
        print(
            f"| {name} | {macs[name] / 1e6:,.1f} | {speed[name]:,.1f} | {speed[name] / speed[reference]:.2f} "
            f"| {rate[name]:,.1f} | {rate[name] / rate[reference]:.2f} |"
        )


if __name__ == "__main__":
    main()
