"""Parse the MNIST idx files (gzip-compressed or not) into arrays.

An idx file is a 4-byte big-endian magic number ``0x0000TTDD`` (two zero bytes, a type
code ``TT``, the number of dimensions ``DD``), one big-endian uint32 size per dimension,
then the values, row-major. MNIST's images are ``0x00000803`` files (unsigned bytes,
count x 28 x 28), its labels ``0x00000801`` files (unsigned bytes, count). Files are
read whole (the largest is 47 MB uncompressed) and decoded with one ``np.frombuffer``.

Download URLs and checksums are Kedro parameters; the file names and expected counts
are the facts kept here.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from isal import igzip, isal_zlib

from convbench.data.archives import GZIP_MAGIC, ArchiveFormatError
from convbench.data.checks import out_of_range

logger = logging.getLogger(__name__)

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""Value type of an idx file by its type code (the magic number's third byte); all big-endian."""

IMAGES_MAGIC = 0x00000803
"""Magic number of an MNIST images file: unsigned bytes, 3 dimensions (count, rows, columns)."""

LABELS_MAGIC = 0x00000801
"""Magic number of an MNIST labels file: unsigned bytes, 1 dimension (count)."""

IMAGE_SHAPE = (28, 28)
"""Rows and columns of an MNIST image."""

CLASS_NAMES = tuple(str(digit) for digit in range(10))
"""Class names in label order: the digits ``"0"`` to ``"9"``."""

FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
"""The official file name of each of the four files, by the key :func:`read_mnist` takes."""

EXPECTED_COUNTS: dict[str, int] = {"train": 60_000, "test": 10_000}
"""Images (and labels) per split in the official files."""

SPLITS = ("train", "test")

LABEL_DTYPE = np.int64
"""Dtype of the label arrays returned by :func:`read_mnist`."""

_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, isal_zlib.error)
"""Exceptions that mean "this gzip stream is damaged or truncated"."""


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Return the array stored in an idx file, gunzipping it first if it is gzip-compressed.

    Compression is detected from the file's first bytes, not its name.

    Args:
        path: The idx file (e.g. ``train-images-idx3-ubyte.gz``).
        expected_magic: The magic number the file must have (e.g. :data:`IMAGES_MAGIC`);
            None accepts any valid idx magic number.

    Returns:
        A writable, C-contiguous array of the header's shape, in native byte order, with
        the dtype of the header's type code (``uint8`` for MNIST).

    Raises:
        ArchiveFormatError: The gzip stream is truncated or corrupt, the magic number is
            not an idx one or not `expected_magic`, the header is incomplete, or the data
            is shorter or longer than the header's sizes say. The message names the file
            and gives what was expected and what was found.
        FileNotFoundError: `path` does not exist.
    """
    path = Path(path)
    data = _read_bytes(path)
    dtype, dims, offset = _parse_header(data, path, expected_magic)
    values = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=offset).reshape(dims)
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_mnist(
    paths: Mapping[str, str | os.PathLike[str]], expected_counts: Mapping[str, int] | None = EXPECTED_COUNTS
) -> dict[str, Any]:
    """Read the four MNIST idx files into arrays and class names.

    Args:
        paths: The path of each file, by the keys of :data:`FILES`: ``train_images``,
            ``train_labels``, ``test_images``, ``test_labels``.
        expected_counts: Images per split, e.g. ``{"train": 60000, "test": 10000}``
            (the default, :data:`EXPECTED_COUNTS`); None skips the check. Keys other
            than ``"train"``/``"test"`` are refused.

    Returns:
        A dict with ``train_images`` and ``test_images`` (``uint8``, ``(N, 28, 28, 1)``),
        ``train_labels`` and ``test_labels`` (``int64``, ``(N,)``, 0-9) and
        ``class_names`` (``["0", ..., "9"]``).

    Raises:
        ArchiveFormatError: A file is malformed (see :func:`read_idx`), is an images file
            where a labels file is expected or the reverse, holds images that are not
            28x28, holds a label outside 0-9, or a split's image and label counts differ
            from each other or from `expected_counts`.
        FileNotFoundError: A file does not exist.
        ValueError: `paths` or `expected_counts` has the wrong keys.
    """
    if set(paths) != set(FILES):
        raise ValueError(f"paths must have exactly the keys {sorted(FILES)}. Received: {sorted(paths)}")
    if expected_counts is not None and not set(expected_counts) <= set(SPLITS):
        raise ValueError(f"expected_counts keys must be 'train' and/or 'test'. Received: {dict(expected_counts)}")
    result: dict[str, Any] = {}
    for split in SPLITS:
        images_path, labels_path = Path(paths[f"{split}_images"]), Path(paths[f"{split}_labels"])
        images = _read_images(images_path)
        labels = _read_labels(labels_path)
        if labels.shape[0] != images.shape[0]:
            raise ArchiveFormatError(
                f"expected as many labels as {images_path} has images ({images.shape[0]:,}), found {labels.shape[0]:,}",
                archive=labels_path,
            )
        _check_count(images_path, split, images.shape[0], expected_counts)
        result[f"{split}_images"] = images[..., np.newaxis]
        result[f"{split}_labels"] = labels.astype(LABEL_DTYPE)
    result["class_names"] = list(CLASS_NAMES)
    logger.info(
        "Read MNIST: %d train and %d test images", result["train_images"].shape[0], result["test_images"].shape[0]
    )
    return result


def mnist_paths(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Return the paths :func:`read_mnist` takes for the four files under their official names in `folder`."""
    return {key: Path(folder) / name for key, name in FILES.items()}


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, gunzipped when the file starts with the gzip magic bytes."""
    data = path.read_bytes()
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return igzip.decompress(data)
    except _GZIP_ERRORS as exc:
        raise ArchiveFormatError(
            f"expected a complete gzip stream, found a truncated or corrupt one "
            f"(an interrupted download?) ({type(exc).__name__}: {exc})",
            archive=path,
        ) from exc


def _parse_header(data: bytes, path: Path, expected_magic: int | None) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return the value dtype, the dimensions and the data offset of an idx file, checking its size."""
    if len(data) < 4:
        raise ArchiveFormatError(
            f"expected an idx file starting with a 4-byte magic number, found {len(data)} byte(s)", archive=path
        )
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ArchiveFormatError(
            f"expected magic number {describe_magic(expected_magic)}, found {describe_magic(magic)}", archive=path
        )
    if data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
        raise ArchiveFormatError(
            f"expected an idx magic number (0x0000TTDD, type code TT one of "
            f"{', '.join(f'0x{code:02X}' for code in IDX_DTYPES)}), found {describe_magic(magic)}",
            archive=path,
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ArchiveFormatError(
            f"expected a {offset}-byte header (magic number and {ndim} sizes), found {len(data)} bytes: "
            "the file is truncated",
            archive=path,
        )
    dims = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected_bytes = math.prod(dims) * dtype.itemsize
    found_bytes = len(data) - offset
    if found_bytes != expected_bytes:
        shape = " x ".join(f"{size:,}" for size in dims)
        extra = found_bytes - expected_bytes
        problem = "the file is truncated" if extra < 0 else f"{extra:,} bytes too many"
        raise ArchiveFormatError(
            f"expected {expected_bytes:,} bytes of data after the {offset}-byte header ({shape} values of "
            f"{dtype.itemsize} byte(s), as the header says), found {found_bytes:,}: {problem}",
            archive=path,
        )
    return dtype, dims, offset


def describe_magic(magic: int) -> str:
    """Return an idx magic number in hex with its meaning, e.g. ``"0x00000803 (uint8, 3 dimensions)"``."""
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 or type_code not in IDX_DTYPES:
        return f"0x{magic:08X} (not an idx magic number)"
    return f"0x{magic:08X} ({IDX_DTYPES[type_code].name}, {ndim} dimension{'s' if ndim != 1 else ''})"


def _read_images(path: Path) -> np.ndarray:
    """Return the ``(N, 28, 28)`` uint8 images of an MNIST images file."""
    images = read_idx(path, IMAGES_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ArchiveFormatError(
            f"expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} images, "
            f"found {images.shape[1]}x{images.shape[2]} (from the header)",
            archive=path,
        )
    return images


def _read_labels(path: Path) -> np.ndarray:
    """Return the ``(N,)`` uint8 labels of an MNIST labels file, checking they are 0-9."""
    labels = read_idx(path, LABELS_MAGIC)
    if problem := out_of_range(labels, len(CLASS_NAMES), "label"):
        first, found = problem
        raise ArchiveFormatError(f"label {first:,} (0-based) {found}", archive=path)
    return labels


def _check_count(path: Path, split: str, found: int, expected_counts: Mapping[str, int] | None) -> None:
    """Raise if `split` has another image count than `expected_counts` says."""
    if expected_counts is None or split not in expected_counts:
        return
    expected = int(expected_counts[split])
    if found != expected:
        raise ArchiveFormatError(f"expected {expected:,} {split} images, found {found:,}", archive=path)
