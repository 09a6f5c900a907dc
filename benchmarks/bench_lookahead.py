"""Benchmark: one lookahead update of a full-size airbench, on the device vs through NumPy on the host.

    .venv/bin/python benchmarks/bench_lookahead.py [--repeats 50]

- **device** (`convbench.training.callbacks.Lookahead`): the running average lives in variables
  beside the weights and one compiled call updates every weight;
- **host** (the implementation before 2026-12-05): each weight copied to a NumPy array, averaged
  there, and assigned back.
Both are timed interleaved on the same model, after a warm-up, and give the same weights (checked).
It prints the median milliseconds per update and the ratio. The update runs every `every` steps
(5 in airbench's recipe).
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
from machine import describe

from convbench.models.registry import get_builder
from convbench.training.callbacks import Lookahead


class HostLookahead(Lookahead):
    """The previous implementation: the average as NumPy arrays, each weight copied to the host and back."""

    def on_train_begin(self, logs=None):
        self._weights = [weight for weight in self.model.weights if "float" in str(weight.dtype)]
        self._average = [keras.ops.convert_to_numpy(weight) for weight in self._weights]
        self._epoch_start = self.steps_done

    def _pull(self, alpha):
        alpha = float(alpha)
        for index, weight in enumerate(self._weights):
            self._average[index] = alpha * self._average[index] + (1 - alpha) * keras.ops.convert_to_numpy(weight)
            weight.assign(self._average[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    model = get_builder("airbench")((32, 32, 3), 10, widths=[64, 256, 256])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    start = [keras.ops.convert_to_numpy(weight) for weight in model.weights]
    variants = {
        "device": Lookahead(440, steps_done=4),
        "host": HostLookahead(440, steps_done=4),
    }  # every call is step 5: a pull
    results = {}
    for name, callback in variants.items():  # same update from the same weights: same result
        for weight, value in zip(model.weights, start, strict=True):
            weight.assign(value)
        callback.set_model(model)
        callback.on_train_begin()
        for weight in callback._weights:
            weight.assign(weight * 0.5)
        callback.on_train_batch_end(0)
        results[name] = [keras.ops.convert_to_numpy(weight) for weight in callback._weights]
    for device, host in zip(results["device"], results["host"], strict=True):
        np.testing.assert_allclose(device, host, rtol=1e-6, atol=1e-7)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, callback in variants.items():
            began = time.perf_counter()
            callback.on_train_batch_end(0)
            times[name].append(time.perf_counter() - began)
    device, host = statistics.median(times["device"]), statistics.median(times["host"])
    print(describe())
    print(f"weights averaged: {len(variants['device']._weights)}, {model.count_params():,} parameters")
    print("| variant | ms per update, median | vs host |")
    print("|---|---:|---:|")
    print(f"| device (one compiled call) | {device * 1000:.2f} | {host / device:.2f}x faster |")
    print(f"| host (NumPy round trip) | {host * 1000:.2f} | 1.00 |")


if __name__ == "__main__":
    main()
