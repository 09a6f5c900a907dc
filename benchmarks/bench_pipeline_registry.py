"""Benchmark: what building the pipeline registry costs a `kedro run`, lazy (as convbench does) against eager.

Run from the project root:

    .venv/bin/python benchmarks/bench_pipeline_registry.py [--rounds 5] [--pipeline cifar10_resnet]

`kedro run --pipelines=P` asks the registry for P alone. `convbench.pipeline_registry.register_pipelines`
returns a `LazyPipelines` mapping that builds P when asked; an eager registry (Kedro's usual
`dict`, convbench's before) builds every pipeline of every dataset and architecture first. Each round
times both in fresh processes, in turns (imports are done before the clock starts, as `kedro run` does
them anyway): the registry call and the first `[P]`. It prints the machine, the command and a Markdown
table; it asserts nothing.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

TIMED = """
import sys, time
from convbench.pipeline_registry import register_pipelines
started = time.perf_counter()
pipelines = register_pipelines()
if sys.argv[2] == "eager":
    pipelines = dict(pipelines)
pipelines[sys.argv[1]]
print("timed", time.perf_counter() - started, len(pipelines))
"""


def timed(pipeline: str, mode: str) -> tuple[float, int]:
    output = subprocess.run(
        [sys.executable, "-c", TIMED, pipeline, mode], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout
    _, seconds, count = next(line for line in output.splitlines() if line.startswith("timed ")).split()
    return float(seconds), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pipeline", default="cifar10_resnet")
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from machine import describe

    print(describe())
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    times: dict[str, list[float]] = {"eager": [], "lazy": []}
    count = 0
    for _ in range(args.rounds):
        for mode in times:
            seconds, count = timed(args.pipeline, mode)
            times[mode].append(seconds)
    eager, lazy = (statistics.median(times[mode]) for mode in ("eager", "lazy"))
    print(f"\nregistered pipelines: {count}; `{args.pipeline}` asked for; median of {args.rounds} rounds\n")
    print("| registry | seconds | ratio to eager |\n|---|---:|---:|")
    print(f"| eager (every pipeline built) | {eager:.2f} | 1.00 |")
    print(f"| lazy (`{args.pipeline}` built) | {lazy:.3f} | {lazy / eager:.3f} |")


if __name__ == "__main__":
    main()
