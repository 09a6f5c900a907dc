"""Benchmark: the whole zoo at an equal training budget, one `kedro run` per architecture, then the leaderboard.

Run from the project root, with the dataset's raw files in place (see benchmarks/README.md):

    .venv/bin/python benchmarks/bench_zoo.py [--minutes 5] [--dataset cifar10] [--only a,b] [--env base]

For every architecture of the registry (or `--only`, in that order), one after the other:
`kedro run --pipelines=<dataset>_<architecture> --params=training.budget.minutes=<M>`, the product's
command, each in its own MLflow run of the dataset's experiment. An architecture whose finished
run at this budget is already in MLflow (same env) is skipped, so an interrupted benchmark
resumes where it stopped; one whose files are missing (ImageNet weights, which no run downloads)
is not run, and the reason is printed. Then `kedro run --pipelines=<dataset>_leaderboard` ranks them
all from MLflow (grouped by budget), and its table and PNG are copied to
`benchmarks/results/zoo_<dataset>_<M>min.{md,png}`.

A budget too short for one epoch of a slow architecture trains the steps that fit, a fraction of
an epoch (the leaderboard's `epoch_fraction` column); an overrun is a column too. It asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from machine import describe

from convbench.models.registry import ARCHITECTURES, check_files
from convbench.tracking import finished_runs

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"
KEDRO = Path(sys.executable).with_name("kedro")


def recipe_model(architecture: str) -> dict:
    """The recipe's `model` block from conf/base (what the file check reads)."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")
    return (loader["parameters"].get("training", {}).get(architecture) or {}).get("model") or {}


def missing_files(architecture: str) -> str | None:
    """Why `architecture` cannot run here (a missing file), or None."""
    try:
        check_files(architecture, recipe_model(architecture))
    except FileNotFoundError as error:
        return str(error).splitlines()[0]
    return None


def done_at_budget(dataset: str, architecture: str, minutes: float, env: str) -> str | None:
    """The id of a finished run that trained `architecture` on `dataset` at this budget, if any."""
    mlflow.set_tracking_uri(f"sqlite:///{PROJECT / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name(dataset)
    if experiment is None:
        return None
    for run in finished_runs(experiment.experiment_id, env):
        metrics = run.data.metrics
        budget = metrics.get(f"{architecture}.budget_minutes")
        if f"{architecture}.test_accuracy" in metrics and budget is not None and math.isclose(budget, minutes):
            return run.info.run_id
    return None


def kedro_run(pipeline: str, params: list[str], env: str | None, log: Path) -> int:
    command = [str(KEDRO), "run", f"--pipelines={pipeline}", *([f"--env={env}"] if env else [])]
    if params:
        command.append(f"--params={','.join(params)}")
    print(f"$ {' '.join(command)}  (log: {log})", flush=True)
    with log.open("a") as output:
        return subprocess.run(command, cwd=PROJECT, stdout=output, stderr=subprocess.STDOUT).returncode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--only", help="comma-separated architecture names (default: all, registry order)")
    parser.add_argument("--env", help="Kedro env of the runs (default: none given, as a plain `kedro run`)")
    args = parser.parse_args(argv)
    architectures = args.only.split(",") if args.only else list(ARCHITECTURES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"zoo_{args.dataset}_{args.minutes:g}min.log"
    print(f"machine: {describe()}", flush=True)
    outcome: dict[str, str] = {}
    for architecture in architectures:
        reason = missing_files(architecture)
        if reason:
            outcome[architecture] = f"not run: {reason}"
        elif run_id := done_at_budget(args.dataset, architecture, args.minutes, args.env or "base"):
            outcome[architecture] = f"done earlier (run {run_id})"
        else:
            started = time.perf_counter()
            status = kedro_run(
                f"{args.dataset}_{architecture}", [f"training.budget.minutes={args.minutes:g}"], args.env, log
            )
            outcome[architecture] = f"exit {status} after {(time.perf_counter() - started) / 60:.1f} min"
        print(f"{architecture}: {outcome[architecture]}", flush=True)
    status = kedro_run(f"{args.dataset}_leaderboard", [], args.env, log)
    report = PROJECT / "data" / "08_reporting" / args.dataset
    for suffix in ("md", "png"):
        shutil.copyfile(report / f"leaderboard.{suffix}", RESULTS / f"zoo_{args.dataset}_{args.minutes:g}min.{suffix}")
    print(f"leaderboard: exit {status}; benchmarks/results/zoo_{args.dataset}_{args.minutes:g}min.{{md,png}}")
    for architecture, line in outcome.items():
        print(f"| {architecture} | {line} |")


if __name__ == "__main__":
    main()
