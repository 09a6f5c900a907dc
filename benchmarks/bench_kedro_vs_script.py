"""Benchmark: `kedro run --pipelines=cifar10_<architecture>` against the time-to-accuracy script, side by side.

Run from the project root, with a real CIFAR-10 archive (see benchmarks/README.md):

    .venv/bin/python benchmarks/bench_kedro_vs_script.py --archive /tmp/cifar-10-binary.tar.gz \\
        [--architecture airbench] [--seed 0] [--epochs N | --budget-minutes M] [--no-append]

One after the other on the same machine, with the same recipe, seed and archive:
1. the product's command, `kedro run --pipelines=cifar10_<architecture> --params=...` in a subprocess,
   as a user runs it (every hook, kedro-mlflow, the dataset lock, ingestion and preprocessing),
   logging to a throw-away MLflow store; its figures are read back from MLflow: each epoch's
   `<architecture>.epoch_time_s`, the `train_model` node's wall time (`node_time_s.*`) and the
   test accuracy with and without TTA;
2. `benchmarks/bench_time_to_accuracy.py` with the same options, in a subprocess (it trains through
   the same `train_model` node function and evaluates the test split after every epoch, outside
   its timing); it appends its own row to "Time to accuracy".
It prints both per-epoch times with their ratio and appends one row to benchmarks/README.md
("`kedro run` against the script"). The ratio is kedro / script on the median epoch after the
first (which traces the graph). It asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pooch
from bench_time_to_accuracy import append_row
from machine import describe, load_average

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "benchmarks" / "README.md"
SECTION = "## `kedro run` against the script"
DATASET = "cifar10"


def kedro_params(archive: Path, architecture: str, seed: int, epochs: int | None, budget: float | None) -> str:
    """`--params` of the kedro run: the archive in place (no download), the seed, and the epochs or budget."""
    params = [
        f"ingestion.{DATASET}.source.destination={archive.resolve()}",
        f"ingestion.{DATASET}.source.known_hash=md5:{pooch.file_hash(str(archive), alg='md5')}",
        f"training.{architecture}.seed={seed}",
    ]
    if epochs is not None:
        params.append(f"training.{architecture}.epochs={epochs}")
    if budget is not None:
        params.append(f"training.budget.minutes={budget:g}")
    return ",".join(params)


def run_kedro(command: list[str], tracking_uri: str, log: Path) -> float:
    """Runs `command` in the project with `tracking_uri` as the MLflow store; its wall seconds."""
    environment = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "KEDRO_DISABLE_TELEMETRY": "true"}
    started = time.perf_counter()
    with log.open("w") as output:
        completed = subprocess.run(command, cwd=PROJECT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    if completed.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({completed.returncode}); its log: {log}")
    return time.perf_counter() - started


def kedro_figures(tracking_uri: str, architecture: str) -> dict:
    """The finished run's epoch times, node time and test accuracies, read from MLflow."""
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(
        experiment_names=[DATASET], output_format="list", filter_string="attributes.status = 'FINISHED'"
    )
    if len(runs) != 1:
        raise SystemExit(f"expected one finished run in {tracking_uri}, found {len(runs)}")
    run = runs[0]

    def curve(name: str) -> list[float]:
        history = client.get_metric_history(run.info.run_id, f"{architecture}.{name}")
        return [metric.value for metric in sorted(history, key=lambda metric: metric.step)]

    metrics = run.data.metrics
    return {
        "epoch_time_s": curve("epoch_time_s"),
        "train_model_s": metrics[f"node_time_s.{DATASET}.{architecture}.train_model"],
        "test_accuracy": metrics[f"{architecture}.test_accuracy"],
        "test_tta_accuracy": metrics.get(f"{architecture}.test_tta_accuracy"),
    }


def steady_median(epoch_times: list[float]) -> float:
    """Median epoch time after the first epoch (which traces the graph); the first one alone if it is all."""
    return statistics.median(epoch_times[1:] or epoch_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="cifar-10-binary.tar.gz (official layout)")
    parser.add_argument("--architecture", default="airbench")
    parser.add_argument("--seed", type=int, default=0)
    epochs = parser.add_mutually_exclusive_group()
    epochs.add_argument("--epochs", type=int, default=None)
    epochs.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to README.md")
    args = parser.parse_args()
    checkpoint = PROJECT / "data" / "06_models" / DATASET / args.architecture / "checkpoint"
    if checkpoint.exists():  # the kedro run would resume from it and time only the rest
        raise SystemExit(f"{checkpoint} holds an unfinished training: delete it to time a whole run")
    bin_dir = Path(sys.executable).parent
    options = [f"--seed={args.seed}"]
    if args.epochs is not None:
        options.append(f"--epochs={args.epochs}")
    if args.budget_minutes is not None:
        options.append(f"--budget-minutes={args.budget_minutes:g}")

    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = f"sqlite:///{scratch}/mlflow.db"
        params = kedro_params(args.archive, args.architecture, args.seed, args.epochs, args.budget_minutes)
        kedro_command = [
            str(bin_dir / "kedro"),
            "run",
            f"--pipelines={DATASET}_{args.architecture}",
            f"--params={params}",
        ]
        print(f"1/2: {' '.join(kedro_command)}", file=sys.stderr, flush=True)
        kedro_wall_s = run_kedro(kedro_command, tracking_uri, Path(scratch) / "kedro.log")
        kedro = kedro_figures(tracking_uri, args.architecture)
        script_json = Path(scratch) / "script.json"
        script_command = [
            sys.executable,
            str(PROJECT / "benchmarks" / "bench_time_to_accuracy.py"),
            f"--archive={args.archive}",
            f"--architecture={args.architecture}",
            *options,
            f"--json={script_json}",
            *(["--no-append"] if args.no_append else []),
        ]
        print(f"2/2: {' '.join(script_command)}", file=sys.stderr, flush=True)
        subprocess.run(script_command, cwd=PROJECT, check=True)
        script = json.loads(script_json.read_text())
    load_after = load_average()

    print("| epoch | kedro run: epoch_time_s | script: epoch_time_s | ratio |")
    print("|---:|---:|---:|---:|")
    for epoch, (ours, theirs) in enumerate(zip(kedro["epoch_time_s"], script["epoch_time_s"], strict=False), start=1):
        print(f"| {epoch} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.3f} |")
    kedro_epoch, script_epoch = steady_median(kedro["epoch_time_s"]), steady_median(script["epoch_time_s"])
    ratio = kedro_epoch / script_epoch
    tta = kedro["test_tta_accuracy"]
    script_tta = script["test_tta_accuracy"]
    summary = (
        f"\nMedian epoch after the first: kedro run {kedro_epoch:.1f} s, script {script_epoch:.1f} s, ratio {ratio:.3f}. "
        f"Training: kedro run's train_model node {kedro['train_model_s'] / 60:.1f} min "
        f"(whole run {kedro_wall_s / 60:.1f} min), script {script['training_s'] / 60:.1f} min."
    )
    print(summary)
    budget = f", budget {args.budget_minutes:g} min" if args.budget_minutes is not None else ""
    row = (
        f"| {dt.date.today().isoformat()} | {describe()} (load avg {load_before}–{load_after}) "
        f"| `python benchmarks/bench_kedro_vs_script.py {' '.join(sys.argv[1:])}` "
        f"| {args.architecture} (seed {args.seed}{budget}) | {len(kedro['epoch_time_s'])} / {len(script['epoch_time_s'])} "
        f"| {kedro_epoch:.1f} s | {script_epoch:.1f} s | **{ratio:.3f}** "
        f"| {kedro['train_model_s'] / 60:.1f} min | {script['training_s'] / 60:.1f} min "
        f"| {kedro['test_accuracy']:.4f}"
        + (f" ({tta:.4f} TTA)" if tta is not None else "")
        + f" | {script['test_accuracy']:.4f}"
        + (f" ({script_tta:.4f} TTA)" if script_tta is not None else "")
        + " |"
    )
    print("\n" + row)
    if not args.no_append:
        append_row(README, SECTION, row)


if __name__ == "__main__":
    main()
