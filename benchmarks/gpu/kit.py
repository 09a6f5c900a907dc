"""The GPU kit: ResNet-20 and airbench train steps timed under JAX and PyTorch, on a machine without TensorFlow.

Run on the GPU machine from a copy of the repository (`make gpu-kit` here first):

    bash benchmarks/gpu/run.sh [--quick] [--out DIR] [--budget-s 420] [--epochs-to-94 N]

Each backend trains in a process of its own (`KERAS_BACKEND`): for each architecture and precision
(float32, bfloat16) and compilation (XLA under JAX, always; eager and `torch.compile` under PyTorch),
the model that `kedro run` trains is built from its recipe (`recipes.json`, frozen from conf/ by
`make gpu-kit`), compiled with it (augmentation, optimiser, schedule, loss; airbench's lookahead as a
callback) and fitted on synthetic uint8 images of CIFAR-10's shape from host NumPy arrays. The first
epoch holds the compilation; the median of the others is the epoch time, scaled from `--images` to
CIFAR-10's 50,000 training images. The time to 94% is (epochs to 94% on the CPU, same recipe and
seed) x (GPU epoch time), given where `--epochs-to-94` is known. Every figure goes to `kit.json`
in the output folder (`--out`, else `$OUT`), and a Markdown table to stdout.

`--quick` (16 images, one step an epoch) checks that the whole path runs, on any machine:
tests/test_gpu_kit.py runs it here on the CPU under JAX, and under PyTorch where it is installed.
The synthetic arrays go to `fit` directly, so what the input pipeline does on the host (the batch
order, a recipe's `horizontal_flip: alternating`) is not in the epoch times.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent
CIFAR10_TRAIN_IMAGES = 50_000
BACKEND_MODULES = {"jax": "jax", "torch": "torch"}
ARCHITECTURES = ("resnet", "airbench")
PRECISIONS = ("float32", "bfloat16")


def compile_modes(backend: str) -> tuple[bool, ...]:
    """`jit_compile` values worth timing: JAX always compiles with XLA; PyTorch runs eagerly or through
    `torch.compile` (Keras' `jit_compile=True` there)."""
    return (True,) if backend == "jax" else (False, True)


def load_recipes(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `make gpu-kit` in the project before copying it to the GPU machine")
    return json.loads(path.read_text())


def devices(backend: str) -> list[str]:
    if backend == "jax":
        import jax

        return [f"{device.platform}:{getattr(device, 'device_kind', device)}" for device in jax.devices()]
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{torch.cuda.get_device_name(index)}" for index in range(torch.cuda.device_count())]
    return ["cpu"]


class EpochTimes:
    """A Keras callback (made when Keras is imported) that keeps each epoch's wall time."""

    @staticmethod
    def make():
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._started)

        return Callback()


def time_training(architecture: str, recipe: dict, precision: str, compiled: bool, images, targets, epochs: int):
    """Epoch times of `architecture` built and compiled as `kedro run` does, fitted on `images`."""
    import numpy as np

    from convbench.training.assembly import assemble_model
    from convbench.training.callbacks import recipe_callbacks
    from convbench.training.compiling import compile_for_training

    recipe = {
        **recipe,
        "mixed_precision": None if precision == "float32" else precision,
        "jit_compile": compiled,
        "epochs": epochs,
    }
    model = assemble_model(
        architecture, images.shape[1:], targets.shape[1], recipe, [127.5] * 3, [64.0] * 3, init_images=images
    )
    batch_size = min(int(recipe["batch_size"]), len(images))
    steps = len(images) // batch_size
    training = compile_for_training(model, recipe, steps)
    timer = EpochTimes.make()
    callbacks = [timer, *recipe_callbacks(recipe, steps)]
    training.fit(images, targets, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    later = timer.seconds[1:] or timer.seconds
    epoch_s = statistics.median(later) * CIFAR10_TRAIN_IMAGES / (steps * batch_size)
    return {
        "first_epoch_s": round(timer.seconds[0], 3),
        "epoch_s": round(epoch_s, 3),
        "images_per_s": round(CIFAR10_TRAIN_IMAGES / epoch_s, 1),
        "batch_size": batch_size,
        "steps_timed": steps * len(later),
        "trainable_parameters": sum(int(np.prod(weight.shape)) for weight in model.trainable_weights),
    }


def child(args: argparse.Namespace) -> None:
    """Times every configuration of one backend (this process's `KERAS_BACKEND`), one JSON line each."""
    import numpy as np

    backend = os.environ["KERAS_BACKEND"]
    recipes = load_recipes(args.recipes)["recipes"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    targets = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=args.images)]
    print(json.dumps({"backend": backend, "devices": devices(backend)}), flush=True)
    deadline = time.monotonic() + args.budget_s
    for architecture in args.architectures:
        for precision in PRECISIONS:
            for compiled in compile_modes(backend):
                row = {"backend": backend, "architecture": architecture, "precision": precision, "compiled": compiled}
                if time.monotonic() > deadline:
                    print(json.dumps({**row, "status": "skipped: the kit's time budget was spent"}), flush=True)
                    continue
                try:
                    figures = time_training(
                        architecture, recipes[architecture], precision, compiled, images, targets, args.epochs
                    )
                    print(json.dumps({**row, "status": "ok", **figures}), flush=True)
                except Exception as error:  # a configuration a backend cannot run is a row, not the end of the kit
                    print(json.dumps({**row, "status": f"failed: {type(error).__name__}: {error}"[:500]}), flush=True)


def run_backend(backend: str, args: argparse.Namespace, budget_s: float) -> list[dict]:
    """The rows of `backend`, from a process of its own; a row saying why where it could not run."""
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        return [{"backend": backend, "status": f"not installed: no {BACKEND_MODULES[backend]} on this machine"}]
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--images",
        str(args.images),
        "--epochs",
        str(args.epochs),
        "--budget-s",
        str(budget_s),
        "--recipes",
        str(args.recipes),
        "--architectures",
        *args.architectures,
    ]
    env = {**os.environ, "KERAS_BACKEND": backend}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=budget_s + 120)
    except subprocess.TimeoutExpired as timeout:
        output, status = timeout.stdout or "", "timed out"
    else:
        output, status = done.stdout, f"exit status {done.returncode}" if done.returncode else "ok"
        if done.returncode:
            sys.stderr.write(done.stderr[-4000:])
    rows = [
        json.loads(line)
        for line in (output if isinstance(output, str) else output.decode()).splitlines()
        if line.startswith("{")
    ]
    if status != "ok":
        rows.append({"backend": backend, "status": f"the {backend} process ended: {status}"})
    return rows


def with_time_to_94(rows: list[dict], epochs_to_94: float | None, recipes: dict) -> list[dict]:
    """airbench's rows with the time to 94%: CPU epochs to 94% x GPU epoch time, and the time of the
    recipe's epochs."""
    for row in rows:
        if row.get("architecture") == "airbench" and row.get("status") == "ok":
            row["recipe_epochs"] = recipes["airbench"]["epochs"]
            row["recipe_time_s"] = round(row["recipe_epochs"] * row["epoch_s"], 2)
            row["time_to_94_s"] = round(epochs_to_94 * row["epoch_s"], 2) if epochs_to_94 else None
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| backend | architecture | precision | compiled | epoch s | images/s | first epoch s | time to 94% s | status |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "architecture" not in row:
            if row.get("status", "ok") != "ok":
                lines.append(f"| {row['backend']} | | | | | | | | {row['status']} |")
            continue
        figures = [row.get(key, "") for key in ("epoch_s", "images_per_s", "first_epoch_s")]
        to_94 = row.get("time_to_94_s")
        cells = [
            row["backend"],
            row["architecture"],
            row["precision"],
            str(row["compiled"]).lower(),
            *map(str, figures),
        ]
        lines.append("| " + " | ".join([*cells, "" if to_94 is None else str(to_94), row["status"]]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 images, one step an epoch: checks the path")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or KIT / "results"))
    parser.add_argument("--backends", nargs="+", default=list(BACKEND_MODULES), choices=list(BACKEND_MODULES))
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--images", type=int, default=12_800, help="synthetic training images (an epoch)")
    parser.add_argument("--epochs", type=int, default=3, help="the first holds the compilation")
    parser.add_argument("--budget-s", type=float, default=420.0, help="all backends together")
    parser.add_argument("--epochs-to-94", type=float, default=None, help="airbench's epochs to 94%% on the CPU")
    parser.add_argument("--recipes", type=Path, default=KIT / "recipes.json", help="written by `make gpu-kit`")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs = 16, 2
    if args.child:
        child(args)
        return
    recipes = load_recipes(args.recipes)
    started = time.monotonic()
    rows: list[dict] = []
    for index, backend in enumerate(args.backends):
        left = args.budget_s - (time.monotonic() - started)
        rows += run_backend(backend, args, budget_s=max(30.0, left / (len(args.backends) - index)))
    rows = with_time_to_94(rows, args.epochs_to_94, recipes["recipes"])
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join(sys.argv),
        "recipes_from": recipes["frozen_from"],
        "cifar10_train_images": CIFAR10_TRAIN_IMAGES,
        "synthetic_images": args.images,
        "epochs_to_94_cpu": args.epochs_to_94,
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kit.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(f"\n{len(rows)} rows in {report['seconds']} s; kit.json in {args.out}")


if __name__ == "__main__":
    main()
