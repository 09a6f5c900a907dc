"""Benchmark: a full-size CIFAR-10 binary archive to arrays, ours versus the course loader.

Run from the project root:

    .venv/bin/python benchmarks/bench_parse_cifar.py [--repeats 5]

It synthesises a stand-in for ``cifar-10-binary.tar.gz`` once (60,000 records in the
official layout, gzip level 6, about as compressible as the real file; cached under
``benchmarks/_work/``), then times, interleaved in one process:

* ours: ``convbench.data.cifar.read_cifar_archive`` (one streaming pass, no extraction);
* the course loader: extract every member to a temporary folder (``tarfile.extractall``,
  ``filter="data"``), read the six ``.bin`` files into one buffer, ``np.delete`` the label
  bytes, reshape to ``(N, 3, 32, 32)`` and transpose to NHWC (a view, as the notebook
  left it), take the labels separately;
* for context, the floors: gzip decompression of the archive alone, with the stdlib's ``zlib``
  (what the course loader uses) and with ISA-L (what ours uses).

It prints a Markdown table (median and min of each) and asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from isal import isal_zlib
from machine import describe, load_average

from convbench.data.cifar import CIFAR10, read_cifar_archive

WORK = Path(__file__).resolve().parent / "_work"
ARCHIVE = WORK / "cifar-10-binary-synthetic-v1.tar.gz"
RECORDS_PER_FILE = 10_000
RECORD = CIFAR10.record_bytes
# Tar member order: not sorted, so a reader must put the training batches in order itself.
MEMBER_ORDER = (
    "data_batch_1.bin",
    "batches.meta.txt",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "test_batch.bin",
    "readme.html",
    "data_batch_5.bin",
    "data_batch_2.bin",
)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NOISE_SIGMA = 2.5
"""Pixel noise on smooth 8x8-block images; gives a compressed/raw ratio near the real file's 0.92."""


def synthesise(path: Path, seed: int = 0) -> None:
    """Write a full-size CIFAR-10 binary archive of synthetic images to `path`."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    with tarfile.open(partial, "w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo(CIFAR10.member_dir)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name in MEMBER_ORDER:
            if name.endswith(".bin"):
                data = _records(rng, RECORDS_PER_FILE)
            elif name == "batches.meta.txt":
                data = ("\n".join(CLASS_NAMES) + "\n\n").encode()
            else:
                data = b"<html><body>Synthetic stand-in for the CIFAR-10 readme.</body></html>\n"
            info = tarfile.TarInfo(CIFAR10.member(name))
            info.size, info.mode, info.mtime = len(data), 0o644, 1_243_000_000
            tar.addfile(info, _BytesReader(data))
    partial.replace(path)
    print(
        f"synthesised {path} ({path.stat().st_size:,} bytes) in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )


def _records(rng: np.random.Generator, n: int) -> bytes:
    """Return `n` CIFAR-10 records: smooth 4x4-block colour fields plus a little noise."""
    coarse = rng.integers(0, 256, size=(n, 3, 4, 4)).astype(np.float32)
    planes = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)
    planes += rng.standard_normal(planes.shape, dtype=np.float32) * NOISE_SIGMA
    records = np.empty((n, RECORD), dtype=np.uint8)
    records[:, 0] = rng.integers(0, 10, size=n)
    records[:, 1:] = np.clip(planes, 0, 255).reshape(n, -1)
    return records.tobytes()


class _BytesReader:
    """Minimal file object over bytes for ``TarFile.addfile``."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._pos + size
        chunk = self._view[self._pos : end].tobytes()
        self._pos += len(chunk)
        return chunk


def ours(archive: Path) -> dict:
    """Our reader."""
    return read_cifar_archive(archive, CIFAR10, {"train": 50_000, "test": 10_000})


def course_baseline(archive: Path, workdir: Path) -> dict:
    """The course notebook's loader: extract, read the six files, np.delete the label bytes."""
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    folder = workdir / CIFAR10.member_dir
    files = [*CIFAR10.train_members, *CIFAR10.test_members]
    buffer = np.frombuffer(b"".join((folder / name).read_bytes() for name in files), dtype=np.uint8)
    labels = buffer[::RECORD].astype(np.int64)
    pixels = np.delete(buffer, np.arange(0, buffer.size, RECORD))
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    n_train = 5 * RECORDS_PER_FILE
    return {
        "train_images": images[:n_train],
        "train_labels": labels[:n_train],
        "test_images": images[n_train:],
        "test_labels": labels[n_train:],
    }


def decompress_only(archive: Path, library=zlib) -> int:
    """Gzip-decompress the archive with `library` (zlib or isal_zlib) and discard the output."""
    total = 0
    decompressor = library.decompressobj(wbits=31)
    with archive.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            total += len(decompressor.decompress(chunk))
    return total


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="synthesise the archive again")
    args = parser.parse_args()
    if args.rebuild or not ARCHIVE.exists():
        synthesise(ARCHIVE)
    size = ARCHIVE.stat().st_size
    with gzip.open(ARCHIVE) as stream:
        raw_size = sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 22), b""))

    # Warm-up (page cache, imports, process memory), and a check that both produce the same
    # arrays. The warm-up times are printed too: a Kedro run calls the reader once, cold.
    cold_ours, mine = _timed(lambda: ours(ARCHIVE))
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        cold_baseline, theirs = _timed(lambda: course_baseline(ARCHIVE, Path(tmp)))
    identical = all(np.array_equal(mine[key], theirs[key]) for key in theirs)
    del mine, theirs

    load_before = load_average()
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "decompress": [], "decompress_isal": []}
    for _ in range(args.repeats):
        elapsed, result = _timed(lambda: ours(ARCHIVE))
        times["ours"].append(elapsed)
        del result
        with tempfile.TemporaryDirectory(dir=WORK) as tmp:
            elapsed, result = _timed(lambda: course_baseline(ARCHIVE, Path(tmp)))
            times["baseline"].append(elapsed)
            del result
        elapsed, _ = _timed(lambda: decompress_only(ARCHIVE))
        times["decompress"].append(elapsed)
        elapsed, _ = _timed(lambda: decompress_only(ARCHIVE, isal_zlib))
        times["decompress_isal"].append(elapsed)

    load_after = load_average()
    median = {key: statistics.median(values) for key, values in times.items()}
    best = {key: min(values) for key, values in times.items()}
    machine = describe()
    command = f"python benchmarks/bench_parse_cifar.py --repeats {args.repeats}"
    print(
        f"Synthetic full-size CIFAR-10 binary archive: 60,000 records, {size:,} bytes gzip level 6 "
        f"({raw_size:,} bytes uncompressed, ratio {size / raw_size:.3f}; the real file: 170,052,171 bytes). "
        f"Outputs identical: {identical}. {args.repeats} interleaved repeats after one warm-up "
        f"(warm-up, i.e. first call in the process: ours {cold_ours:.3f} s, course loader {cold_baseline:.3f} s). "
        f"1-minute load average before/after the timed runs: {load_before}/{load_after} "
        "(other work on the machine inflates the medians)."
    )
    print()
    print(
        "| machine | command | ours: `read_cifar_archive` median (min) s | course loader median (min) s | baseline/ours (median) | inflate alone, zlib / ISA-L, median s |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {machine} | `{command}` | {median['ours']:.3f} ({best['ours']:.3f}) "
        f"| {median['baseline']:.3f} ({best['baseline']:.3f}) | {median['baseline'] / median['ours']:.2f}x "
        f"| {median['decompress']:.3f} / {median['decompress_isal']:.3f} |"
    )


if __name__ == "__main__":
    main()
