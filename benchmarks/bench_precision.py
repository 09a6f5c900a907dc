"""Benchmark: training step speed with mixed precision (bfloat16, float16) and XLA against float32.

Run from the project root:

    .venv/bin/python benchmarks/bench_precision.py [--only resnet,airbench] [--batch-size 128] [--rounds 3]

For each architecture (default: `resnet`, ResNet-20, and `airbench`) and each variant of its recipe
(`float32`; `mixed_precision: bfloat16`; `mixed_precision: float16`, with loss scaling;
`jit_compile: true`, XLA; `bfloat16 + XLA`), the model is built as a run builds it
(`build_model` with the recipe's hyperparameters and policy, raw uint8 CIFAR-shaped input, 10
classes) and compiled with the recipe (`compile_model`). `train_on_batch` on one synthetic batch
in memory: 2 untimed steps (tracing, XLA compilation), then `--rounds` rounds in which every
variant takes `--steps` timed steps in turn, so that a change in the machine's load hits all
variants alike. The figure is the median step's images/s; the ratio is against float32 in the same
run. It prints the machine, the command and a Markdown table; it asserts nothing.

The same command on a GPU machine gives the GPU rows (the device is named in the machine line).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from bench_architectures import machine, recipes

from convbench.pipelines.training.nodes import build_model
from convbench.training.compiling import compile_model

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
VARIANTS: dict[str, dict[str, Any]] = {
    "float32": {"mixed_precision": None, "jit_compile": False},
    "bfloat16": {"mixed_precision": "bfloat16", "jit_compile": False},
    "float16": {"mixed_precision": "float16", "jit_compile": False},
    "float32 + XLA": {"mixed_precision": None, "jit_compile": True},
    "bfloat16 + XLA": {"mixed_precision": "bfloat16", "jit_compile": True},
}
REFERENCE = "float32"


def compiled(architecture: str, recipe: dict[str, Any], variant: dict[str, Any]) -> keras.Model:
    keras.utils.set_random_seed(0)
    recipe = {**recipe, **variant}
    rng = np.random.default_rng(0)
    init_images = rng.integers(0, 256, (256, *IMAGE_SHAPE), dtype=np.uint8)
    statistics_ = {"mean": [125.0] * 3, "std": [63.0] * 3}
    model = build_model(
        init_images, np.arange(256), [str(i) for i in range(NUM_CLASSES)], statistics_, recipe, architecture
    )
    return compile_model(model, recipe, steps_per_epoch=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="resnet,airbench", help="comma-separated architecture names")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = parser.parse_args(argv)
    all_recipes = recipes()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch_size, *IMAGE_SHAPE), dtype=np.uint8))
    labels = tf.constant(keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, args.batch_size), NUM_CLASSES))
    variants = args.variants.split(",")
    rows = []
    for architecture in args.only.split(","):
        models, warmup, times = {}, {}, {name: [] for name in variants}
        for name in variants:
            models[name] = compiled(architecture, all_recipes[architecture], VARIANTS[name])
            started = time.perf_counter()
            for _ in range(2):
                models[name].train_on_batch(images, labels)
            warmup[name] = time.perf_counter() - started
        for _ in range(args.rounds):
            for name in variants:
                for _ in range(args.steps):
                    started = time.perf_counter()
                    models[name].train_on_batch(images, labels)
                    times[name].append(time.perf_counter() - started)
        speeds = {name: args.batch_size / statistics.median(times[name]) for name in variants}
        for name in variants:
            row = {"architecture": architecture, "variant": name, "images_per_s": speeds[name]}
            row["ratio"] = speeds[name] / speeds[REFERENCE] if REFERENCE in speeds else float("nan")
            row["warmup_s"] = warmup[name]
            rows.append(row)
            print(f"{architecture} {name}: {speeds[name]:.1f} images/s", file=sys.stderr, flush=True)
    print(f"\nmachine: {machine()}")
    print(f"command: python benchmarks/bench_precision.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"batch {args.batch_size}, median of {args.rounds} x {args.steps} interleaved steps after 2 untimed\n")
    print("| architecture | variant | images/s (fwd+bwd) | vs float32 | warm-up s |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['architecture']} | {row['variant']} | {row['images_per_s']:,.1f} | {row['ratio']:.2f} "
            f"| {row['warmup_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
