"""Benchmark: recipe changes tried side by side on the validation split of a real CIFAR-10 archive.

Run from the project root, with the archive's path (never committed; see benchmarks/README.md):

    .venv/bin/python benchmarks/bench_recipe_tries.py --archive /tmp/cifar-10-binary.tar.gz \\
        [--architecture airbench] [--seed 0] [--epochs N | --budget-minutes M] \\
        --try baseline --try bfloat16:mixed_precision=bfloat16 \\
        --try "flips:augmentation.horizontal_flip=alternating,model.whiten_bias_epochs=3"

Each `--try NAME[:KEY=VALUE,...]` trains the architecture once, one after the other in this process,
through the same code as `bench_time_to_accuracy.py` (and so as `kedro run`), with its settings
applied as `--params=training.<architecture>.KEY=VALUE` would (values read as YAML). Every try
gets the same seed, split and epochs or budget. A try reports the final validation accuracy with and
without the recipe's TTA, its epochs and training time; the test split is never read, so recipes
can be picked on these figures and the test accuracy reported once, afterwards.

It prints a Markdown table and appends it (with machine, command and date) to benchmarks/README.md
("Recipe tries on the validation split"). It asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

import keras
import numpy as np
from bench_time_to_accuracy import (
    README,
    add_training_arguments,
    final_accuracy,
    prepared_model,
    recipe_setting,
    run_parameters,
    train_logged,
    without_json,
)
from machine import describe, load_average

from convbench.data.cifar import CIFAR10, read_cifar_archive

SECTION = "## Recipe tries on the validation split"


def parse_try(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME[:KEY=VALUE,...]` as (name, {dotted key: YAML value})."""
    name, _, settings = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"--try {text!r}: expected NAME or NAME:KEY=VALUE,...")
    return name, dict(recipe_setting(setting) for setting in filter(None, settings.split(",")))


def run_try(arrays: dict[str, Any], architecture: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Trains one try as the pipeline does; its validation figures, epochs and training time."""
    keras.utils.clear_session()
    model, recipe, train_idx, val_idx, _ = prepared_model(arrays, architecture, parameters)
    load_before = load_average()
    started = time.perf_counter()
    model, history, summary = train_logged(model, arrays, (train_idx, val_idx), recipe, architecture)
    training_s = time.perf_counter() - started
    val_accuracy, val_tta = final_accuracy(
        model, arrays["train_images"][val_idx], arrays["train_labels"][val_idx], recipe
    )
    return {
        "epochs": int(summary["epochs"]),
        "training_s": training_s,
        "epoch_s": float(np.median(history.get("epoch_time_s") or [float("nan")])),
        "val_accuracy": val_accuracy,
        "val_tta_accuracy": val_tta,
        "val_curve": [float(value) for value in history.get("val_accuracy", [])],
        "load_average": f"{load_before}–{load_average()}",
    }


def table(tries: list[tuple[str, dict[str, Any]]], results: list[dict[str, Any]]) -> str:
    """The Markdown table of the tries, each against the first."""
    first = results[0]
    lines = [
        "| try | settings (`training.<architecture>.`) | epochs | epoch time (median) | training time "
        "| val accuracy | with TTA | TTA vs first try | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (name, overrides), result in zip(tries, results, strict=True):
        settings = ", ".join(f"`{key}={value}`" for key, value in overrides.items()) or "the recipe"
        with_tta = result["val_tta_accuracy"]
        difference = (
            f"{(with_tta - first['val_tta_accuracy']) * 100:+.2f} pt"
            if with_tta is not None and first["val_tta_accuracy"] is not None
            else "n/a"
        )
        lines.append(
            f"| {name} | {settings} | {result['epochs']} | {result['epoch_s']:.0f} s "
            f"| {result['training_s'] / 60:.1f} min | {result['val_accuracy']:.4f} "
            f"| {'n/a' if with_tta is None else f'{with_tta:.4f}'} | {difference} | {result['load_average']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser)
    parser.add_argument(
        "--try",
        dest="tries",
        type=parse_try,
        action="append",
        required=True,
        metavar="NAME[:K=V,...]",
        help="a name and its settings, each as --params=training.<architecture>.K=V (repeatable; the first is the reference)",
    )
    args = parser.parse_args()

    arrays = read_cifar_archive(args.archive, CIFAR10, {"train": 50000, "test": 10000})
    results = []
    for name, overrides in args.tries:
        parameters = run_parameters(args.architecture, args.seed, args.epochs, args.budget_minutes, args.env, overrides)
        result = run_try(arrays, args.architecture, parameters)
        print(f"{name}: {result}", flush=True)
        results.append(result)
    command = " ".join(["python benchmarks/bench_recipe_tries.py", *without_json(sys.argv[1:])])
    block = f"{dt.date.today().isoformat()}, {describe()}: `{command}`\n\n" + table(args.tries, results) + "\n"
    print("\n" + block)
    if not args.no_append:
        text = README.read_text()
        if SECTION not in text:
            text = text.rstrip() + f"\n\n{SECTION}\n"
        head, tail = text.split(SECTION, 1)
        README.write_text(head + SECTION + "\n\n" + block + "\n" + tail.lstrip("\n"))


if __name__ == "__main__":
    main()
