"""Benchmark: the archive reader's own background gzip stream versus ``isal.igzip_threaded``.

Run from the project root:

    .venv/bin/python benchmarks/bench_gzip_reader.py [--repeats 15]

Both parse the synthetic full-size CIFAR-10 archive of ``bench_parse_cifar.py`` (built there
and cached under ``benchmarks/_work/``) with ``convbench.data.cifar.read_cifar_archive``:

* ours: as shipped; ``convbench.data.archives`` inflates with ISA-L on a background thread in
  its own stream class, which tarfile reads in random-access mode (``"r:"``, forward seeks only);
* igzip_threaded: the same reader with the stream opened by python-isal's
  ``igzip_threaded.open(..., threads=1)`` instead. Its reader cannot seek, so tarfile reads it in
  stream mode (``"r|"``); the stream is read to its end afterwards, as ours does, so the gzip
  trailer is checked too.

The two run interleaved in one process, the order swapped every repeat, so that load on the
machine affects both alike; the ratio of each pair is what to read, not the absolute times.
It prints a Markdown table row and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tarfile
import time
from collections.abc import Iterator

import bench_parse_cifar
import numpy as np
from isal import igzip_threaded
from machine import describe, load_average

from convbench.data import archives


@contextlib.contextmanager
def _igzip_threaded_tar_stream(raw) -> Iterator[tuple[tarfile.TarFile, None]]:
    """What ``archives._open_tar_stream`` would be with ``igzip_threaded`` (gzip input only)."""
    with igzip_threaded.open(raw, "rb", threads=1, block_size=archives.STREAM_BUFSIZE) as stream:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=archives.STREAM_BUFSIZE) as tar:
            yield tar, None
        while stream.read(archives.STREAM_BUFSIZE):  # to the end: checks the CRC, EOFError if cut short
            pass


@contextlib.contextmanager
def _reader(name: str) -> Iterator[None]:
    """Run the body with the archive reader `name` ("ours" or "igzip_threaded")."""
    if name == "ours":
        yield
        return
    shipped = archives._open_tar_stream
    archives._open_tar_stream = _igzip_threaded_tar_stream
    try:
        yield
    finally:
        archives._open_tar_stream = shipped


def _parse(name: str) -> tuple[float, dict]:
    with _reader(name):
        started = time.perf_counter()
        result = bench_parse_cifar.ours(bench_parse_cifar.ARCHIVE)
        return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    if not bench_parse_cifar.ARCHIVE.exists():
        bench_parse_cifar.synthesise(bench_parse_cifar.ARCHIVE)

    # Warm-up, and a check that both give the same arrays.
    _, mine = _parse("ours")
    _, theirs = _parse("igzip_threaded")
    identical = all(np.array_equal(mine[key], theirs[key]) for key in mine)
    del mine, theirs

    load_before = load_average()
    times: dict[str, list[float]] = {"ours": [], "igzip_threaded": []}
    ratios = []
    for repeat in range(args.repeats):
        order = ("ours", "igzip_threaded") if repeat % 2 == 0 else ("igzip_threaded", "ours")
        pair = {}
        for name in order:
            pair[name], result = _parse(name)
            del result
            times[name].append(pair[name])
        ratios.append(pair["igzip_threaded"] / pair["ours"])
    load_after = load_average()

    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    command = f"python benchmarks/bench_gzip_reader.py --repeats {args.repeats}"
    print(
        f"Outputs identical: {identical}. {args.repeats} interleaved pairs after one warm-up each; "
        f"1-minute load average before/after: {load_before}/{load_after}."
    )
    print()
    print(
        "| machine | command | ours, median (min) s | igzip_threaded, median (min) s "
        "| igzip_threaded/ours per pair: median (min-max) | ratio of the minima |"
    )
    print("|---|---|---:|---:|---:|---:|")
    print(
        f"| {describe()} | `{command}` | {median['ours']:.3f} ({best['ours']:.3f}) "
        f"| {median['igzip_threaded']:.3f} ({best['igzip_threaded']:.3f}) "
        f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) "
        f"| {best['igzip_threaded'] / best['ours']:.3f} |"
    )


if __name__ == "__main__":
    main()
