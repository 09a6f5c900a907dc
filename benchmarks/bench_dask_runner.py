"""Benchmark: `convbench.runner.DaskRunner` against Kedro's SequentialRunner, side by side.

Run from the project root:

    .venv/bin/python benchmarks/bench_dask_runner.py [--nodes 100] [--rounds 3] [--zoo] [--workers 2]

1. **Overhead per node.** A chain of `--nodes` nodes, each passing a 1 KB array on in memory, run by the
   SequentialRunner and by the DaskRunner on a local cluster of one worker process, in turns, `--rounds`
   times. The figure is (Dask - sequential) / nodes: what scheduling a node as a task, sending its
   catalog and gathering its report cost.
2. **The smoke zoo** (`--zoo`): `kedro run --pipelines=cifar10 --env=smoke` (every architecture, the smoke
   subsets, 1 epoch) with the SequentialRunner, then with the DaskRunner on a `dask scheduler` and
   `--workers` one-thread workers of this machine, each in a fresh copy of the project with the data
   prepared once before (`cifar10_data`, from a smoke archive written by tests/cifar_archives.py; the
   stand-in ImageNet weights of tests/imagenet_weights.py for `mobilenet_v2_imagenet`).
   Wall time of each `kedro run` and the ratio.

It prints the machine, the command and Markdown tables; it asserts nothing.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))


def chain(nodes: int):
    import numpy as np
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Pipeline, node

    pipeline = Pipeline([node(pass_on, f"d{index}", f"d{index + 1}", name=f"n{index}") for index in range(nodes)])
    return pipeline, lambda: DataCatalog(datasets={"d0": MemoryDataset(np.zeros(128))})


def pass_on(data):
    return data + 1


def overhead(nodes: int, rounds: int) -> None:
    from distributed import LocalCluster
    from kedro.framework.hooks.manager import _NullPluginManager
    from kedro.runner import SequentialRunner

    from convbench.runner import DaskRunner

    pipeline, catalog = chain(nodes)
    times: dict[str, list[float]] = {"sequential": [], "dask": []}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        runners = {"sequential": SequentialRunner(), "dask": DaskRunner(address=cluster.scheduler_address)}
        runners["dask"].run(pipeline, catalog(), _NullPluginManager())  # the worker imports what the nodes need
        for _ in range(rounds):
            for name, runner in runners.items():
                started = time.perf_counter()
                runner.run(pipeline, catalog(), _NullPluginManager())
                times[name].append(time.perf_counter() - started)
    sequential, dask = (statistics.median(times[name]) for name in ("sequential", "dask"))
    print(f"\n### Overhead per node ({nodes} nodes in a chain, median of {rounds} rounds)\n")
    print("| runner | wall s, each round | median s | per node ms |")
    print("|---|---|---|---|")
    for name, median in (("SequentialRunner", sequential), ("DaskRunner, 1 local worker", dask)):
        rounds_text = ", ".join(f"{value:.2f}" for value in times["dask" if "Dask" in name else "sequential"])
        print(f"| {name} | {rounds_text} | {median:.2f} | {1000 * median / nodes:.1f} |")
    print(f"\nDask overhead per node: {1000 * (dask - sequential) / nodes:.1f} ms")


def zoo(workers: int) -> None:
    import cifar_archives
    import dask_cluster
    from imagenet_weights import fill_keras_cache
    from kedro_project import kedro_env, new_project

    class Folders:  # tmp_path_factory's one method new_project uses
        def __init__(self, root: Path) -> None:
            self.root = root

        def mktemp(self, name: str) -> Path:
            return Path(tempfile.mkdtemp(prefix=name, dir=self.root))

    with tempfile.TemporaryDirectory() as scratch:
        folders = Folders(Path(scratch))
        params = cifar_archives.file_mirror_params(folders.mktemp("mirror"))
        keras_home = folders.mktemp("keras_home")
        fill_keras_cache(keras_home, alpha=0.35, input_size=96)  # mobilenet_v2_imagenet's stand-in weights
        env = {"KERAS_HOME": str(keras_home)}
        kedro = str(Path(sys.executable).with_name("kedro"))

        def run(project: Path, *extra: str) -> float:
            command = [kedro, "run", *extra, "--env=smoke", f"--params={','.join(params)}"]
            started = time.perf_counter()
            subprocess.run(command, cwd=project, check=True, capture_output=True, env=kedro_env(env))
            return time.perf_counter() - started

        prepared = new_project(folders)
        run(prepared, "--pipelines=cifar10_data")
        walls = {}
        for name in ("sequential", "dask"):
            project = folders.mktemp(name) / "project"
            shutil.copytree(prepared, project, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
            if name == "sequential":
                walls[name] = run(project, "--pipelines=cifar10")
                continue
            with dask_cluster.dask_cluster(folders.mktemp("dask"), cwd=project, workers=workers, env=env) as cluster:
                runner = ("--runner=convbench.runner.DaskRunner", f"--runner-params=address={cluster.address}")
                walls[name] = run(project, "--pipelines=cifar10", *runner)
    print("\n### The smoke zoo (`kedro run --pipelines=cifar10 --env=smoke`, data prepared before)\n")
    print("| runner | wall s | ratio |")
    print("|---|---|---|")
    print(f"| SequentialRunner | {walls['sequential']:.0f} | 1.00 |")
    print(f"| DaskRunner, {workers} workers | {walls['dask']:.0f} | {walls['dask'] / walls['sequential']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zoo", action="store_true", help="also time the smoke zoo under both runners")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from machine import describe

    print(describe())
    print("command:", shlex.join([".venv/bin/python", "benchmarks/bench_dask_runner.py", *sys.argv[1:]]))
    overhead(args.nodes, args.rounds)
    if args.zoo:
        zoo(args.workers)


if __name__ == "__main__":
    main()
