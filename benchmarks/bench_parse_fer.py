"""Benchmark: a full-size ``fer2013.csv`` to arrays, our parser versus pandas with NumPy's text parsing.

Run from the project root:

    .venv/bin/python benchmarks/bench_parse_fer.py [--repeats 5] [--work-dir DIR]

It synthesises a stand-in for Kaggle's ``fer2013.csv`` once (35,887 rows in the official format:
header ``emotion,pixels,Usage``, unquoted fields, LF line ends, 28,709 Training, 3,589 PublicTest
and 3,589 PrivateTest rows, each 2,304 space-separated pixels of a smooth 48x48 grey image plus
noise; about 295 MB, cached in a temporary folder, never in the repository), then times, interleaved
in one process, each reading the file into ``uint8`` images ``(N, 48, 48, 1)`` and ``int64`` emotions:

* ours: ``convbench.data.fer2013.load_fer2013`` (fields found with ``bytes.find``, pixel text
  decoded with NumPy in chunks of rows on threads, every field checked);
* pandas, per row: ``pandas.read_csv``, then ``np.fromstring(pixels, sep=" ")`` for each row;
* pandas, joined: ``pandas.read_csv``, then one ``np.fromstring(" ".join(column), sep=" ")``;
* pandas (pyarrow engine), per row: the fastest pandas + NumPy variant found: ``read_csv`` with
  ``engine="pyarrow"`` (multithreaded), then ``np.fromstring`` per row;
* the course loader: ``csv.reader``, ``[int(p) for p in row[1].split(' ')]`` per row, one ``np.array``;
* for context, the floor: reading the file's bytes alone.

None of the pandas variants checks what ours checks: ``np.fromstring`` into ``uint8`` wraps 256 to 0,
accepts tabs and repeated spaces, and names no row. The file is in the page cache for every timed
run (the warm-up reads it). It prints a Markdown table: each variant's median and min time, and the
median over the repeats of its time divided by ours in the same repeat. It asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from machine import describe, load_average

from convbench.data.fer2013 import load_fer2013

WORK = Path(tempfile.gettempdir()) / "convbench-bench"
CSV_NAME = "fer2013-synthetic-v1.csv"
SPLIT_ROWS = {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
TARGET_S = 2.0
"""The target for ours on the full file."""
NOISE_SIGMA = 6.0
"""Pixel noise on smooth images (a 6x6 grid of 8x8-pixel blocks): values spread over 0-255, mostly 2-3 digits."""
PIXELS = 48 * 48
COLUMN_TYPES = {"emotion": np.int64, "pixels": str, "Usage": str}

Parsed = tuple[np.ndarray, np.ndarray]
"""Images ``uint8`` ``(N, 48, 48, 1)`` and emotions ``int64`` ``(N,)``."""


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


def ours(path: Path) -> Parsed:
    """Our reader."""
    table = load_fer2013(path)
    return table.images, table.emotions


def pandas_per_row(path: Path, engine: str = "c") -> Parsed:
    """``pandas.read_csv``, then ``np.fromstring`` on each row's pixel text."""
    frame = pd.read_csv(path, engine=engine, dtype=COLUMN_TYPES)
    column = frame["pixels"].tolist()
    images = np.empty((len(column), PIXELS), dtype=np.uint8)
    for row, pixels in enumerate(column):
        images[row] = np.fromstring(pixels, dtype=np.uint8, sep=" ")
    return images.reshape(-1, 48, 48, 1), frame["emotion"].to_numpy(np.int64)


def pandas_arrow_per_row(path: Path) -> Parsed:
    """:func:`pandas_per_row` with pandas' multithreaded pyarrow CSV engine."""
    return pandas_per_row(path, engine="pyarrow")


def pandas_joined(path: Path) -> Parsed:
    """``pandas.read_csv``, then one ``np.fromstring`` over the whole pixel column joined by spaces."""
    frame = pd.read_csv(path, dtype=COLUMN_TYPES)
    pixels = np.fromstring(" ".join(frame["pixels"].tolist()), dtype=np.uint8, sep=" ")
    return pixels.reshape(-1, 48, 48, 1), frame["emotion"].to_numpy(np.int64)


def course_loader(path: Path) -> Parsed:
    """The course notebook's loader: csv.reader, then int() for every pixel, then np.array."""
    images, emotions, usage = [], [], []
    with path.open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader)  # header
        for row in reader:
            emotions.append(int(row[0]))
            images.append([int(p) for p in row[1].split(" ")])
            usage.append(row[2])
    return np.array(images, dtype=np.uint8).reshape(-1, 48, 48, 1), np.array(emotions, dtype=np.int64)


def read_only(path: Path) -> int:
    """Read the file's bytes and discard them."""
    return len(path.read_bytes())


VARIANTS: dict[str, Callable[[Path], object]] = {
    "ours": ours,
    "pandas_per_row": pandas_per_row,
    "pandas_joined": pandas_joined,
    "pandas_arrow_per_row": pandas_arrow_per_row,
    "course_loader": course_loader,
    "read": read_only,
}
LABELS = {
    "ours": "ours: `load_fer2013`",
    "pandas_per_row": '`pd.read_csv` + `np.fromstring(row, sep=" ")` per row',
    "pandas_joined": '`pd.read_csv` + one `np.fromstring(" ".join(column), sep=" ")`',
    "pandas_arrow_per_row": '`pd.read_csv(engine="pyarrow")` + `np.fromstring` per row',
    "course_loader": "course loader: `csv.reader` + `int()` per pixel",
    "read": "read the file's bytes alone",
}


def _timed(function: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    result = function()
    elapsed = time.perf_counter() - started
    del result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=WORK, help=f"where the file is cached (default {WORK})")
    parser.add_argument("--rebuild", action="store_true", help="synthesise the file again")
    args = parser.parse_args()
    path = args.work_dir / CSV_NAME
    if args.rebuild or not path.exists():
        synthesise(path)
    size = path.stat().st_size

    # Warm-up (page cache, imports, process memory), and a check that every variant returns the same arrays.
    images, emotions = ours(path)
    identical = {}
    for name in ("pandas_per_row", "pandas_joined", "pandas_arrow_per_row", "course_loader"):
        their_images, their_emotions = VARIANTS[name](path)
        identical[name] = np.array_equal(images, their_images) and np.array_equal(emotions, their_emotions)
        del their_images, their_emotions
    rows = images.shape[0]
    del images, emotions

    load_before = load_average()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, variant in VARIANTS.items():
            times[name].append(_timed(lambda variant=variant: variant(path)))
    load_after = load_average()

    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    ratio = {
        name: statistics.median(mine / our for mine, our in zip(values, times["ours"]))
        for name, values in times.items()
    }
    command = f"python benchmarks/bench_parse_fer.py --repeats {args.repeats}"
    met = "met" if median["ours"] <= TARGET_S else "NOT met"
    print(
        f"Synthetic full-size fer2013.csv: {rows:,} rows, {size:,} bytes. Same arrays as ours: {identical}. "
        f"{args.repeats} interleaved repeats after one warm-up. 1-minute load average before/after the timed "
        f"runs: {load_before}/{load_after}. Target for ours: <= {TARGET_S:.1f} s ({met})."
    )
    print(f"\nMachine: {describe()}. Command: `{command}`.\n")
    print("| variant | median (min) s | time / ours, median of the repeats |")
    print("|---|---:|---:|")
    for name in VARIANTS:
        print(f"| {LABELS[name]} | {median[name]:.3f} ({best[name]:.3f}) | {ratio[name]:.2f}x |")


if __name__ == "__main__":
    main()
