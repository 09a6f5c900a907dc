"""Benchmark: a full-size ``fer2013.csv`` to arrays, ours versus the course loader.

Run from the project root:

    .venv/bin/python benchmarks/bench_parse_fer.py [--repeats 3]

It synthesises a stand-in for Kaggle's ``fer2013.csv`` once (35,887 rows in the official format:
header ``emotion,pixels,Usage``, unquoted fields, LF line ends, 28,709 Training, 3,589 PublicTest
and 3,589 PrivateTest rows, each 2,304 space-separated pixels of a smooth 48x48 grey image plus
noise; cached under ``benchmarks/_work/``), then times, interleaved in one process:

* ours: ``convbench.data.fer.load_fer2013`` (read the file, find the fields with ``bytes.find``,
  decode the pixel text with NumPy in chunks of rows on threads, check every field);
* the course loader: ``csv.reader`` over the file, ``[int(p) for p in row[1].split(' ')]`` for each
  row into a list, then one ``np.array`` of all the lists (no checks beyond what ``int`` refuses);
* for context, the floor: reading the file's bytes alone.

The file is in the page cache for every timed run (the warm-up reads it). It prints a Markdown
table (median and min of each) and asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import describe, load_average

from convbench.data.fer import load_fer2013

WORK = Path(__file__).resolve().parent / "_work"
CSV_PATH = WORK / "fer2013-synthetic-v1.csv"
SPLIT_ROWS = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
TARGET_S = 2.0
"""The target for ours on the full file."""
NOISE_SIGMA = 6.0
"""Pixel noise on smooth images (a 6x6 grid of 8x8-pixel blocks): values spread over 0-255, mostly 2-3 digits."""


def synthesise(path: Path, seed: int = 0) -> None:
    """Write a full-size ``fer2013.csv`` of synthetic images to `path`."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    as_text = [str(value).encode() for value in range(256)]
    with partial.open("wb") as out:
        out.write(b"emotion,pixels,Usage\n")
        for usage, count in SPLIT_ROWS.items():
            images = _images(rng, count)
            emotions = rng.integers(0, 7, size=count)
            for image, emotion in zip(images, emotions):
                pixels = b" ".join([as_text[value] for value in image.tolist()])
                out.write(b"%d,%s,%s\n" % (emotion, pixels, usage.encode()))
    partial.replace(path)
    elapsed = time.perf_counter() - started
    print(f"synthesised {path} ({path.stat().st_size:,} bytes) in {elapsed:.0f} s", file=sys.stderr)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return `n` flattened 48x48 images: smooth 8x8-pixel blocks of random grey plus noise."""
    coarse = rng.integers(0, 256, size=(n, 6, 6)).astype(np.float32)
    images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    images += rng.standard_normal(images.shape, dtype=np.float32) * NOISE_SIGMA
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, -1)


def ours(path: Path) -> dict[str, np.ndarray]:
    """Our reader."""
    table = load_fer2013(path)
    return {"images": table.images, "emotions": table.emotions}


def course_loader(path: Path) -> dict[str, np.ndarray]:
    """The course notebook's loader: csv.reader, then int() for every pixel, then np.array."""
    images, emotions, usage = [], [], []
    with path.open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader)  # header
        for row in reader:
            emotions.append(int(row[0]))
            images.append([int(p) for p in row[1].split(" ")])
            usage.append(row[2])
    return {
        "images": np.array(images, dtype=np.uint8).reshape(-1, 48, 48, 1),
        "emotions": np.array(emotions, dtype=np.int64),
    }


def read_only(path: Path) -> int:
    """Read the file's bytes and discard them."""
    return len(path.read_bytes())


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="synthesise the file again")
    args = parser.parse_args()
    if args.rebuild or not CSV_PATH.exists():
        synthesise(CSV_PATH)
    size = CSV_PATH.stat().st_size

    # Warm-up (page cache, imports, process memory), and a check that both produce the same arrays.
    cold_ours, mine = _timed(lambda: ours(CSV_PATH))
    cold_baseline, theirs = _timed(lambda: course_loader(CSV_PATH))
    identical = all(np.array_equal(mine[key], theirs[key]) for key in theirs)
    rows = mine["images"].shape[0]
    del mine, theirs

    load_before = load_average()
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "read": []}
    for _ in range(args.repeats):
        elapsed, result = _timed(lambda: ours(CSV_PATH))
        times["ours"].append(elapsed)
        del result
        elapsed, result = _timed(lambda: course_loader(CSV_PATH))
        times["baseline"].append(elapsed)
        del result
        elapsed, _ = _timed(lambda: read_only(CSV_PATH))
        times["read"].append(elapsed)
    load_after = load_average()

    median = {key: statistics.median(values) for key, values in times.items()}
    best = {key: min(values) for key, values in times.items()}
    machine = describe()
    command = f"python benchmarks/bench_parse_fer.py --repeats {args.repeats}"
    met = "met" if median["ours"] <= TARGET_S else "NOT met"
    print(
        f"Synthetic full-size fer2013.csv: {rows:,} rows, {size:,} bytes. Outputs identical: {identical}. "
        f"{args.repeats} interleaved repeats after one warm-up (warm-up, i.e. first call in the process: "
        f"ours {cold_ours:.3f} s, course loader {cold_baseline:.3f} s). 1-minute load average before/after "
        f"the timed runs: {load_before}/{load_after} (other work on the machine inflates the medians). "
        f"Target for ours: <= {TARGET_S:.1f} s ({met})."
    )
    print()
    print(
        "| machine | command | ours: `load_fer2013` median (min) s | course loader median (min) s "
        "| course/ours (median) | read the file alone, median s |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {machine} | `{command}` | {median['ours']:.3f} ({best['ours']:.3f}) "
        f"| {median['baseline']:.3f} ({best['baseline']:.3f}) | {median['baseline'] / median['ours']:.1f}x "
        f"| {median['read']:.3f} |"
    )


if __name__ == "__main__":
    main()
