"""Benchmark: the pad-and-crop augmentation in `keras.ops` (any backend) against its TensorFlow-only
predecessor (`tf.pad` and `tf.gather` with `batch_dims`, before issue 25), under TensorFlow.

Run from the project root:

    .venv/bin/python benchmarks/bench_augmentation.py [--rounds 5] [--steps 20]

Two figures, each taken in rounds that alternate the two implementations (old, new, new, old...),
so that a change in the machine's load hits both alike:
- the layer alone: `RandomPadCrop(4)` then a horizontal flip on a batch of 512 float 32x32x3 images,
  in a `tf.function`, images/s;
- a whole train step: ResNet-20 with its recipe's augmentation (`train_on_batch`, batch 128),
  images/s.
The two implementations draw the same offsets and give the same pixels (checked first). It prints
the machine, the command and a Markdown table of medians and new/old ratios; it asserts nothing.
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

from convbench.pipelines.training.nodes import build_model
from convbench.training import augmentation
from convbench.training.compiling import compile_for_training


class TensorFlowPadCrop(augmentation.RandomPadCrop):
    """The implementation before issue 25, kept here as the reference."""

    def call(self, images, training=None):
        if not training or not self.padding:
            return images
        p = self.padding
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode=self.mode.upper())
        offset_y = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        offset_x = keras.random.randint((batch,), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        rows = offset_y[:, None] + tf.range(height)[None, :]
        cols = offset_x[:, None] + tf.range(width)[None, :]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, cols, axis=2, batch_dims=1)


IMPLEMENTATIONS = {"old (tf.gather)": TensorFlowPadCrop, "new (keras.ops)": augmentation.RandomPadCrop}


def layer_step(pad_crop_class):
    pad_crop = pad_crop_class(4, seed=0)
    flip = keras.layers.RandomFlip("horizontal", seed=0)
    return tf.function(lambda images: flip(pad_crop(images, training=True), training=True))


def train_step(pad_crop_class, images, labels):
    augmentation.RandomPadCrop = pad_crop_class  # what `augmentation_layers` builds
    try:
        recipe = recipes()["resnet"]
        statistics_ = {"mean": [125.0] * 3, "std": [63.0] * 3}
        model = build_model(images, np.arange(len(images)), [str(i) for i in range(10)], statistics_, recipe, "resnet")
        model = compile_for_training(model, recipe, steps_per_epoch=100)
    finally:
        augmentation.RandomPadCrop = IMPLEMENTATIONS["new (keras.ops)"]
    return lambda: model.train_on_batch(images, labels)


def timed(step, steps: int, batch: int) -> float:
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    layer_batch = rng.integers(0, 256, (512, 32, 32, 3)).astype("float32")
    outputs = [layer_step(cls)(layer_batch).numpy() for cls in IMPLEMENTATIONS.values()]
    assert np.array_equal(*outputs), "the two implementations must give the same pixels"

    train_images = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    train_labels = keras.ops.one_hot(rng.integers(0, 10, 128), 10)
    steps = {}
    for name, cls in IMPLEMENTATIONS.items():
        layer = layer_step(cls)
        steps[("layer", name)] = (lambda layer=layer: layer(layer_batch), 512)
        steps[("train", name)] = (train_step(cls, train_images, train_labels), 128)
    for step, _ in steps.values():
        step(), step()  # tracing
    figures = {key: [] for key in steps}
    order = list(steps)
    for round_ in range(args.rounds):
        for key in order if round_ % 2 == 0 else order[::-1]:
            step, batch = steps[key]
            figures[key].append(timed(step, args.steps, batch))

    print(machine())
    print(f"command: {shlex.join([sys.executable.split('/')[-1], *sys.argv])}\n")
    print("| figure | old (tf.gather), images/s | new (keras.ops), images/s | new / old |")
    print("|---|---:|---:|---:|")
    for what, label in (("layer", "pad-crop + flip, batch 512"), ("train", "ResNet-20 train step, batch 128")):
        old, new = (statistics.median(figures[(what, name)]) for name in IMPLEMENTATIONS)
        print(f"| {label} | {old:,.0f} | {new:,.0f} | {new / old:.2f} |")


if __name__ == "__main__":
    main()
