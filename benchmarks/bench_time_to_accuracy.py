"""Benchmark: time to accuracy of one recipe on a real CIFAR-10 archive.

Run from the project root, with the archive's path (never committed; see benchmarks/README.md for
how to rebuild the official binary archive from the public PNGs):

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --archive /tmp/cifar-10-binary.tar.gz \\
        [--architecture airbench] [--seed 0] [--epochs N | --budget-minutes M] [--no-append]

It does what `kedro run --pipelines=cifar10_<architecture>` does, with the project's own code
(parser, seeded stratified split with 5,000 validation images, training-split statistics, the
builder with its data init, the recipe from conf/base with the dataset's overrides, the tf.data
input pipeline and augmentation), and after every epoch measures validation and test accuracy
(without TTA, on the weights of that epoch). It reports the training wall time, evaluation
excluded, at which the test accuracy first reached 85, 90, 93 and 94%, and at the end the test
accuracy of the final weights (EMA when the recipe has it) with and without the recipe's TTA.
It prints a Markdown table and appends one row to benchmarks/README.md ("Time to accuracy")
with machine, command, seed and date. It asserts nothing.

With `--budget-minutes M` it trains as `--params=training.budget.minutes=M` does: it calibrates on
a few timed steps (`convbench.training.fit.plan_budget`), picks the epochs that fit and stretches
the schedule to end there (linear decay to zero). The calibration counts towards the training time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from machine import describe, load_average

from convbench.config import ConvbenchConfigLoader
from convbench.data.cifar import CIFAR10, read_cifar_archive
from convbench.pipelines.preprocessing.nodes import channel_statistics, split_dataset
from convbench.pipelines.training.nodes import build_model, resolve_recipe
from convbench.settings import CONFIG_LOADER_ARGS
from convbench.training.budget import check_budget
from convbench.training.fit import compile_for_training, plan_budget, recipe_callbacks, trainable_parameters
from convbench.training.input_pipeline import training_dataset
from convbench.training.tta import enabled as tta_enabled
from convbench.training.tta import predict_with_tta

PROJECT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.85, 0.90, 0.93, 0.94)
README = PROJECT / "benchmarks" / "README.md"
SECTION = "## Time to accuracy"


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    predicted = model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float((predicted == labels).mean())


class EpochEvaluation(keras.callbacks.Callback):
    """After each epoch: training seconds so far (evaluation excluded), validation and test accuracy."""

    def __init__(self, model, val, test, batch_size):
        super().__init__()
        self.plain_model, self.val, self.test, self.batch_size = model, val, test, batch_size
        self.rows: list[dict[str, float]] = []
        self.train_seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self._started
        row = {
            "epoch": epoch + 1,
            "train_s": self.train_seconds,
            "val_accuracy": accuracy(self.plain_model, *self.val, self.batch_size),
            "test_accuracy": accuracy(self.plain_model, *self.test, self.batch_size),
        }
        self.rows.append(row)
        print(
            f"epoch {row['epoch']}: {row['train_s']:.0f} s of training, val {row['val_accuracy']:.4f}, "
            f"test {row['test_accuracy']:.4f}",
            file=sys.stderr,
            flush=True,
        )


def load_recipe(architecture: str, seed: int, epochs: int | None) -> dict:
    parameters = ConvbenchConfigLoader(str(PROJECT / "conf"), env="base", **CONFIG_LOADER_ARGS)["parameters"]
    recipe = resolve_recipe(parameters["training"][architecture], parameters["recipe_overrides"]["cifar10"], {})
    recipe["seed"] = seed
    if epochs is not None:
        recipe["epochs"] = epochs
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="cifar-10-binary.tar.gz (official layout)")
    parser.add_argument("--architecture", default="airbench")
    parser.add_argument("--seed", type=int, default=0)
    epochs = parser.add_mutually_exclusive_group()
    epochs.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    epochs.add_argument(
        "--budget-minutes", type=float, default=None, help="train within this budget (training.budget.minutes)"
    )
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to README.md")
    args = parser.parse_args()

    recipe = load_recipe(args.architecture, args.seed, args.epochs)
    arrays = read_cifar_archive(args.archive, CIFAR10, {"train": 50000, "test": 10000})
    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    test_images, test_labels = arrays["test_images"], arrays["test_labels"]
    train_idx, val_idx, _ = split_dataset(
        train_labels, test_labels, {"val_size": args.val_size, "seed": 42, "subset": None}
    )
    statistics = channel_statistics(train_images, train_idx)
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    model = build_model(train_images, train_idx, arrays["class_names"], statistics, recipe, args.architecture)
    build_s = time.perf_counter() - started
    batch_size, eval_batch = int(recipe["batch_size"]), int(recipe["eval_batch_size"])
    steps = -(-len(train_idx) // batch_size)
    calibration_s, budget_text = 0.0, ""
    if args.budget_minutes is not None:
        budget = check_budget({"minutes": args.budget_minutes})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as plan_dir:
            recipe, planned = plan_budget(
                model,
                (train_images[train_idx], train_labels[train_idx]),
                (train_images[val_idx], train_labels[val_idx]),
                10,
                recipe,
                budget,
                Path(plan_dir),
            )
        calibration_s = time.perf_counter() - started
        budget_text = (
            f", budget {args.budget_minutes:g} min: {planned['planned_epochs']} epochs of "
            f"{planned['predicted_epoch_s']:.0f} s predicted, {calibration_s:.0f} s calibration"
        )
    training_model = compile_for_training(model, recipe, steps)
    evaluation = EpochEvaluation(
        model, (train_images[val_idx], train_labels[val_idx]), (test_images, test_labels), eval_batch
    )
    evaluation.train_seconds = calibration_s
    load_before = load_average()
    training_model.fit(
        training_dataset(train_images[train_idx], train_labels[train_idx], 10, batch_size, seed=args.seed),
        epochs=int(recipe["epochs"]),
        callbacks=[*recipe_callbacks(recipe, steps), evaluation],
        shuffle=False,
        verbose=0,
    )
    load_after = load_average()
    final_plain = accuracy(model, test_images, test_labels, eval_batch)  # EMA weights when the recipe has ema
    tta = recipe.get("tta") or {}
    final_tta = (
        float((predict_with_tta(model, test_images, tta, eval_batch).argmax(1) == test_labels).mean())
        if tta_enabled(tta)
        else None
    )
    rows = evaluation.rows
    reached = {
        threshold: next((row["train_s"] for row in rows if row["test_accuracy"] >= threshold), None)
        for threshold in THRESHOLDS
    }
    epochs_to = {
        threshold: next((row["epoch"] for row in rows if row["test_accuracy"] >= threshold), None)
        for threshold in THRESHOLDS
    }

    def when(threshold):
        seconds = reached[threshold]
        return "not reached" if seconds is None else f"{seconds / 60:.1f} min (epoch {epochs_to[threshold]})"

    print("| epoch | training time | val accuracy | test accuracy |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['epoch']} | {row['train_s']:.0f} s | {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} |")
    tta_text = f"{final_tta:.4f}" if final_tta is not None else "no TTA in the recipe"
    print(
        f"\nFinal test accuracy: {final_plain:.4f} without TTA, {tta_text} with TTA. "
        f"Thresholds: " + ", ".join(f"{int(t * 100)}%: {when(t)}" for t in THRESHOLDS)
    )
    command = " ".join(["python benchmarks/bench_time_to_accuracy.py", *sys.argv[1:]])
    row = (
        f"| {dt.date.today().isoformat()} | {describe()} (load avg {load_before}–{load_after}) | `{command}` "
        f"| {args.architecture} ({trainable_parameters(model):,} params{budget_text}) | {args.seed} | {len(rows)} "
        f"| {rows[-1]['train_s'] / 60:.1f} min (+{build_s:.0f} s build) | {final_plain:.4f} | {tta_text} | "
        + " | ".join(when(t) for t in THRESHOLDS)
        + " |"
    )
    print("\n" + row)
    if not args.no_append:
        text = README.read_text()
        if SECTION not in text:
            raise SystemExit(f"{README} has no {SECTION!r} section to append to")
        head, tail = text.split(SECTION, 1)
        table_end = tail.find("\n\n", tail.find("|---"))
        tail = (
            tail[:table_end] + "\n" + row + tail[table_end:] if table_end != -1 else tail.rstrip() + "\n" + row + "\n"
        )
        README.write_text(head + SECTION + tail)


if __name__ == "__main__":
    main()
