"""Benchmark: time to accuracy of one recipe on a real CIFAR-10 archive.

Run from the project root, with the archive's path (never committed; see benchmarks/README.md for
how to rebuild the official binary archive from the public PNGs):

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --archive /tmp/cifar-10-binary.tar.gz \\
        [--architecture airbench] [--seed 0] [--epochs N | --budget-minutes M] [--set KEY=VALUE ...] \\
        [--no-append] [--json FILE]

It trains through the same code as `kedro run --pipelines=cifar10_<architecture>`: the parser,
the split and statistics with the settings Kedro resolves (`preprocessing.cifar10`), the builder
with its data init, the recipe resolved by the project's configuration loader (conf/base, the run
env, then `--seed`, `--epochs`, `--budget-minutes` and each `--set KEY=VALUE` as `--params` would set them), and
`convbench.training.fit.fit` itself: the budget calibration, callbacks, per-epoch validation,
checkpoints and MLflow curves (into a throw-away MLflow store), exactly as the pipeline's
`train_model` node. The one thing it adds is a callback that, after every epoch, measures
validation and test accuracy (no TTA, the weights of that epoch); that evaluation is left out of
the training time. It reports the training wall time at which test accuracy first reached 85, 90,
93 and 94%, and at the end the test accuracy of the final weights (EMA when the recipe has it)
with and without the recipe's TTA. With a budget the calibration counts as training time.

It prints a Markdown table, appends one row to benchmarks/README.md ("Time to accuracy") with
machine, command, seed and date, and with `--json FILE` writes the figures for
`bench_kedro_vs_script.py`. It asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import yaml
from machine import describe, load_average

from convbench.config import RUN_RECIPE_SETTINGS, ConvbenchConfigLoader
from convbench.data.cifar import CIFAR10, read_cifar_archive
from convbench.pipelines.preprocessing.nodes import channel_statistics, split_dataset
from convbench.pipelines.training.nodes import build_model, resolve_recipe, train_model
from convbench.settings import CONFIG_LOADER_ARGS
from convbench.training.tta import enabled as tta_enabled
from convbench.training.tta import predict_with_tta

PROJECT = Path(__file__).resolve().parents[1]
DATASET = "cifar10"
THRESHOLDS = (0.85, 0.90, 0.93, 0.94)
README = PROJECT / "benchmarks" / "README.md"
SECTION = "## Time to accuracy"


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    predicted = model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float((predicted == labels).mean())


class EpochEvaluation(keras.callbacks.Callback):
    """After each epoch: training seconds since `started` (this evaluation excluded), validation and test accuracy."""

    def __init__(self, model, val, test, batch_size, started: float):
        super().__init__()
        self.plain_model, self.val, self.test, self.batch_size = model, val, test, batch_size
        self.started, self.evaluation_s = started, 0.0
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        began = time.perf_counter()
        row = {
            "epoch": epoch + 1,
            "train_s": began - self.started - self.evaluation_s,
            "epoch_time_s": float((logs or {}).get("epoch_time_s", float("nan"))),
            "val_accuracy": accuracy(self.plain_model, *self.val, self.batch_size),
            "test_accuracy": accuracy(self.plain_model, *self.test, self.batch_size),
        }
        self.evaluation_s += time.perf_counter() - began
        self.rows.append(row)
        print(
            f"epoch {row['epoch']}: {row['train_s']:.0f} s of training ({row['epoch_time_s']:.0f} s this epoch), "
            f"val {row['val_accuracy']:.4f}, test {row['test_accuracy']:.4f}",
            file=sys.stderr,
            flush=True,
        )


def recipe_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` (a dotted key under `training.<architecture>`, a YAML value) as (key, value)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. augmentation.horizontal_flip=alternating)")
    return key.strip(), yaml.safe_load(value)


def nested(settings: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} as {"a": {"b": 1}}, as Kedro reads dotted `--params` keys."""
    tree: dict[str, Any] = {}
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        branch = tree
        for parent in parents:
            branch = branch.setdefault(parent, {})
        branch[leaf] = value
    return tree


def run_parameters(
    architecture: str,
    seed: int | None,
    epochs: int | None,
    budget_minutes: float | None,
    env: str,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The project's parameters as `kedro run --env=<env> --params=...` resolves them for these options;
    `settings` are `training.<architecture>.KEY=VALUE` params."""
    training: dict[str, Any] = {}
    recipe_settings = nested(settings or {}) | {
        key: value for key, value in (("seed", seed), ("epochs", epochs)) if value is not None
    }
    if recipe_settings:
        training[architecture] = recipe_settings
    if budget_minutes is not None:
        training["budget"] = {"minutes": budget_minutes}
    loader = ConvbenchConfigLoader(
        str(PROJECT / "conf"),
        env=env,
        runtime_params={"training": training} if training else None,
        **CONFIG_LOADER_ARGS,
    )
    return loader["parameters"]


def prepared_model(
    arrays: dict[str, Any], architecture: str, parameters: dict[str, Any]
) -> tuple[keras.Model, dict[str, Any], np.ndarray, np.ndarray, float]:
    """What the pipeline builds before training: (model, recipe, train indices, val indices, build seconds)."""
    recipe = resolve_recipe(
        parameters["training"][architecture],
        parameters["recipe_overrides"][DATASET],
        parameters[RUN_RECIPE_SETTINGS][architecture],
    )
    images, labels = arrays["train_images"], arrays["train_labels"]
    train_idx, val_idx, _ = split_dataset(labels, arrays["test_labels"], parameters["preprocessing"][DATASET])
    statistics = channel_statistics(images, train_idx)
    started = time.perf_counter()
    model = build_model(images, train_idx, arrays["class_names"], statistics, recipe, architecture, DATASET)
    return model, recipe, train_idx, val_idx, time.perf_counter() - started


def train_logged(
    model: keras.Model,
    arrays: dict[str, Any],
    indices: tuple[np.ndarray, np.ndarray],
    recipe: dict[str, Any],
    architecture: str,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> tuple[keras.Model, dict[str, list[float]], dict[str, Any]]:
    """The pipeline's `train_model` node on (train, val) `indices`, its curves logged to a throw-away MLflow store."""
    with tempfile.TemporaryDirectory() as scratch:
        mlflow.set_tracking_uri(f"sqlite:///{scratch}/mlflow.db")
        with mlflow.start_run():
            return train_model(
                model,
                arrays["train_images"],
                arrays["train_labels"],
                *indices,
                arrays["class_names"],
                recipe,
                Path(scratch) / "checkpoint",
                architecture,
                callbacks=callbacks or [],
            )


def final_accuracy(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, recipe: dict[str, Any]
) -> tuple[float, float | None]:
    """Accuracy of the final weights (EMA when the recipe has it) without and with the recipe's TTA (None: no TTA)."""
    eval_batch = int(recipe["eval_batch_size"])
    tta = recipe.get("tta") or {}
    with_tta = (
        float((predict_with_tta(model, images, tta, eval_batch).argmax(1) == labels).mean())
        if tta_enabled(tta)
        else None
    )
    return accuracy(model, images, labels, eval_batch), with_tta


def measure(archive: Path, architecture: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Trains `architecture` as the pipeline does and returns the per-epoch rows and final figures."""
    arrays = read_cifar_archive(archive, CIFAR10, {"train": 50000, "test": 10000})
    model, recipe, train_idx, val_idx, build_s = prepared_model(arrays, architecture, parameters)
    val = (arrays["train_images"][val_idx], arrays["train_labels"][val_idx])
    test = (arrays["test_images"], arrays["test_labels"])
    load_before = load_average()
    started = time.perf_counter()
    evaluation = EpochEvaluation(model, val, test, int(recipe["eval_batch_size"]), started)
    model, history, summary = train_logged(model, arrays, (train_idx, val_idx), recipe, architecture, [evaluation])
    training_s = time.perf_counter() - started - evaluation.evaluation_s
    load_after = load_average()
    final_plain, final_tta = final_accuracy(model, *test, recipe)
    return {
        "architecture": architecture,
        "seed": int(recipe["seed"]),
        "parameters": int(summary["parameters"]),
        "build_s": build_s,
        "training_s": training_s,
        "epoch_time_s": history.get("epoch_time_s", []),
        "rows": evaluation.rows,
        "summary": summary,
        "test_accuracy": final_plain,
        "test_tta_accuracy": final_tta,
        "load_average": (load_before, load_after),
        "machine": describe(),
    }


def threshold_times(rows: list[dict[str, float]]) -> dict[float, tuple[float, int] | None]:
    """For each threshold: (training seconds, epoch) at which test accuracy first reached it, or None."""
    return {
        threshold: next(((row["train_s"], row["epoch"]) for row in rows if row["test_accuracy"] >= threshold), None)
        for threshold in THRESHOLDS
    }


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say what to train: archive, architecture, seed, epochs or budget, env."""
    parser.add_argument("--archive", type=Path, required=True, help="cifar-10-binary.tar.gz (official layout)")
    parser.add_argument("--architecture", default="airbench")
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed (training.<architecture>.seed)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    length.add_argument(
        "--budget-minutes", type=float, default=None, help="train within this budget (training.budget.minutes)"
    )
    parser.add_argument("--env", default="local", help="the Kedro run env whose parameters apply (default: local)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to README.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser)
    parser.add_argument(
        "--set",
        dest="settings",
        type=recipe_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe setting, as --params=training.<architecture>.KEY=VALUE (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    parameters = run_parameters(
        args.architecture, args.seed, args.epochs, args.budget_minutes, args.env, dict(args.settings)
    )
    result = measure(args.archive, args.architecture, parameters)
    rows, summary = result["rows"], result["summary"]
    reached = threshold_times(rows)

    def when(threshold):
        hit = reached[threshold]
        return "not reached" if hit is None else f"{hit[0] / 60:.1f} min (epoch {hit[1]})"

    print("| epoch | training time | epoch time | val accuracy | test accuracy |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['epoch']} | {row['train_s']:.0f} s | {row['epoch_time_s']:.0f} s | {row['val_accuracy']:.4f} "
            f"| {row['test_accuracy']:.4f} |"
        )
    final_tta = result["test_tta_accuracy"]
    tta_text = f"{final_tta:.4f}" if final_tta is not None else "no TTA in the recipe"
    print(
        f"\nFinal test accuracy: {result['test_accuracy']:.4f} without TTA, {tta_text} with TTA. "
        f"Thresholds: " + ", ".join(f"{int(t * 100)}%: {when(t)}" for t in THRESHOLDS)
    )
    budget_text = ""
    if args.budget_minutes is not None:
        budget_text = (
            f", budget {args.budget_minutes:g} min: {summary['planned_epochs']} epochs of "
            f"{summary['predicted_epoch_s']:.0f} s predicted"
        )
    command = " ".join(["python benchmarks/bench_time_to_accuracy.py", *without_json(sys.argv[1:])])
    load_before, load_after = result["load_average"]
    row = (
        f"| {dt.date.today().isoformat()} | {result['machine']} (load avg {load_before}–{load_after}) | `{command}` "
        f"| {args.architecture} ({result['parameters']:,} params{budget_text}) | {result['seed']} | {len(rows)} "
        f"| {result['training_s'] / 60:.1f} min (+{result['build_s']:.0f} s build) | {result['test_accuracy']:.4f} "
        f"| {tta_text} | " + " | ".join(when(t) for t in THRESHOLDS) + " |"
    )
    print("\n" + row)
    if args.json is not None:
        args.json.write_text(json.dumps({**result, "command": command}, indent=1, default=str))
    if not args.no_append:
        append_row(README, SECTION, row)


def without_json(arguments: list[str]) -> list[str]:
    """The command-line arguments less `--json FILE` (a scratch file says nothing about the measurement)."""
    shown, rest = [], iter(arguments)
    for argument in rest:
        if argument == "--json":
            next(rest, None)
        elif not argument.startswith("--json="):
            shown.append(argument)
    return shown


def append_row(readme: Path, section: str, row: str) -> None:
    """Appends `row` to the first table under `section` in `readme`."""
    text = readme.read_text()
    if section not in text:
        raise SystemExit(f"{readme} has no {section!r} section to append to")
    head, tail = text.split(section, 1)
    table_end = tail.find("\n\n", tail.find("|---"))
    tail = tail[:table_end] + "\n" + row + tail[table_end:] if table_end != -1 else tail.rstrip() + "\n" + row + "\n"
    readme.write_text(head + section + tail)


if __name__ == "__main__":
    main()
