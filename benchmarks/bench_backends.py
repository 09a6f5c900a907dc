"""Benchmark: the train step of the same models under each installed Keras backend, side by side.

Run from the project root:

    .venv/bin/python benchmarks/bench_backends.py [--only resnet,airbench,simple_cnn,vgg16]
        [--backends tensorflow,jax] [--precisions float32,bfloat16] [--batch-size 128] [--steps 3] [--rounds 3]

One worker process per backend (`KERAS_BACKEND` is fixed per process) builds every architecture in
every precision as a run builds it (`build_model` with the recipe's hyperparameters, raw uint8
CIFAR-shaped input, 10 classes; `compile_model` with the recipe), then takes 2 untimed steps
(tracing and compiling). The workers then take turns: in each round every worker times `--steps`
`train_on_batch` calls of each model on one synthetic batch, one worker after the other, so that a
change in the machine's load hits every backend alike. The figure is the median step's images/s;
the ratio is against TensorFlow in the same run. A backend that is not installed is skipped and
said so. It prints the machine, the command and a Markdown table; it asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
PRECISIONS = {"float32": {}, "bfloat16": {"mixed_precision": "bfloat16"}}
REFERENCE = "tensorflow"
IMAGE_SHAPE, NUM_CLASSES = (32, 32, 3), 10


def worker(architectures: list[str], precisions: list[str], batch_size: int, steps: int) -> None:
    """Builds the models under this process's backend, then answers each `round` line on stdin with
    one JSON line of step times (seconds) per model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    from bench_architectures import recipes

    from convbench.pipelines.training.nodes import build_model
    from convbench.training.compiling import compile_model

    all_recipes = recipes()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, *IMAGE_SHAPE), dtype=np.uint8)
    labels = keras.utils.to_categorical(rng.integers(0, NUM_CLASSES, batch_size), NUM_CLASSES)
    statistics_ = {"mean": [125.0] * 3, "std": [63.0] * 3}
    models, warmup = {}, {}
    for architecture in architectures:
        for precision in precisions:
            recipe = {**all_recipes[architecture], **PRECISIONS[precision]}
            keras.utils.set_random_seed(0)
            model = build_model(
                images, np.arange(batch_size), [str(i) for i in range(NUM_CLASSES)], statistics_, recipe, architecture
            )
            model = compile_model(model, recipe, steps_per_epoch=100)
            started = time.perf_counter()
            for _ in range(2):
                model.train_on_batch(images, labels)
            key = f"{architecture}/{precision}"
            models[key], warmup[key] = model, time.perf_counter() - started
    print(json.dumps({"ready": warmup}), flush=True)
    for _ in sys.stdin:
        times = {}
        for key, model in models.items():
            times[key] = []
            for _ in range(steps):
                started = time.perf_counter()
                model.train_on_batch(images, labels)
                times[key].append(time.perf_counter() - started)
        print(json.dumps(times), flush=True)


def machine() -> str:
    import keras
    from machine import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, Keras {keras.__version__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="resnet,airbench,simple_cnn,vgg16", help="comma-separated architectures")
    parser.add_argument("--backends", default=",".join(BACKEND_MODULES), help="comma-separated Keras backends")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: float32, bfloat16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # this process is one backend's worker
    args = parser.parse_args(argv)
    architectures, precisions = args.only.split(","), args.precisions.split(",")
    if args.worker:
        worker(architectures, precisions, args.batch_size, args.steps)
        return
    backends, skipped = [], []
    for backend in args.backends.split(","):
        (backends if importlib.util.find_spec(BACKEND_MODULES[backend]) else skipped).append(backend)
    workers, warmup = {}, {}
    for backend in backends:
        command = [sys.executable, __file__, "--worker", backend, *(argv if argv is not None else sys.argv[1:])]
        workers[backend] = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "KERAS_BACKEND": backend},
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        warmup[backend] = json.loads(workers[backend].stdout.readline())["ready"]
        print(f"{backend}: built and warmed up", file=sys.stderr, flush=True)
    times = {backend: {} for backend in backends}
    for round_ in range(args.rounds):
        for backend in backends if round_ % 2 == 0 else backends[::-1]:
            workers[backend].stdin.write("round\n")
            workers[backend].stdin.flush()
            for key, seconds in json.loads(workers[backend].stdout.readline()).items():
                times[backend].setdefault(key, []).extend(seconds)
    for process in workers.values():
        process.stdin.close()
        process.wait()

    print(f"\nmachine: {machine()}")
    print(f"command: python benchmarks/bench_backends.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"batch {args.batch_size}, median of {args.rounds} x {args.steps} interleaved steps after 2 untimed")
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    print("\n| architecture | precision | backend | images/s (fwd+bwd) | vs TensorFlow | warm-up s |")
    print("|---|---|---|---:|---:|---:|")
    for key in times[backends[0]]:
        architecture, precision = key.split("/")
        speeds = {backend: args.batch_size / statistics.median(times[backend][key]) for backend in backends}
        for backend in backends:
            ratio = speeds[backend] / speeds[REFERENCE] if REFERENCE in speeds else float("nan")
            print(
                f"| {architecture} | {precision} | {backend} | {speeds[backend]:,.1f} | {ratio:.2f} "
                f"| {warmup[backend][key]:.1f} |"
            )


if __name__ == "__main__":
    main()
