"""Build small MNIST idx files in exactly the official format, for tests.

Import as ``import mnist_files`` (``tests/`` is on pytest's ``pythonpath``).

:func:`make_mnist_files` writes the four files under their official names (gzip-compressed
like the downloads, or plain): a 4-byte big-endian magic number (``0x00000803`` for images,
``0x00000801`` for labels), one big-endian uint32 per dimension, then the unsigned bytes,
row-major. The header is packed with :mod:`struct`, independently of the parser. A
``mutate`` hook edits the uncompressed file contents before writing, to build failure cases.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
HEADER_BYTES = {"images": 16, "labels": 8}
"""Header size of an images (magic + 3 sizes) and a labels (magic + 1 size) file."""

Contents = dict[str, bytes]
"""Key of :data:`FILES` (e.g. ``"train_images"``) -> uncompressed file bytes."""


def encode_idx(values: np.ndarray, magic: int) -> bytes:
    """Return an idx file: `magic`, the sizes of `values` (big-endian uint32 each), then its bytes."""
    header = struct.pack(f">I{values.ndim}I", magic, *values.shape)
    return header + np.ascontiguousarray(values).tobytes()


def make_mnist_files(
    folder: str | Path,
    train: int = 20,
    test: int = 10,
    seed: int = 0,
    *,
    compress: bool = True,
    mutate: Callable[[Contents], Contents] | None = None,
) -> tuple[dict[str, Path], dict]:
    """Write the four MNIST files into `folder` and return their paths and the expected result.

    The first training image is all zeros except pixel (3, 5) = 255, and its label is 9
    (the highest valid label); the other images and labels are random.

    Args:
        folder: Where to write the files (created if needed).
        train: Images in the training files.
        test: Images in the test files.
        seed: Seed of the random images and labels.
        compress: Whether to gzip the files, as the official downloads are.
        mutate: Called with the uncompressed contents (key -> bytes) and returns the
            contents to write instead.

    Returns:
        ``(paths, expected)``: the path of each file by key, and what
        :func:`convbench.data.mnist.read_mnist` must return for the files before `mutate`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    expected: dict = {}
    contents: Contents = {}
    for split, count in (("train", train), ("test", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        if split == "train" and count:
            images[0] = 0
            images[0, 3, 5] = 255
            labels[0] = 9
        contents[f"{split}_images"] = encode_idx(images, IMAGES_MAGIC)
        contents[f"{split}_labels"] = encode_idx(labels, LABELS_MAGIC)
        expected[f"{split}_images"] = images[..., np.newaxis]
        expected[f"{split}_labels"] = labels.astype(np.int64)
    expected["class_names"] = [str(digit) for digit in range(10)]
    if mutate is not None:
        contents = mutate(contents)
    paths = {key: folder / name for key, name in FILES.items()}
    for key, data in contents.items():
        paths[key].write_bytes(gzip_bytes(data) if compress else data)
    return paths, expected


def gzip_bytes(data: bytes) -> bytes:
    """Return `data` gzip-compressed with a fixed header (no name, mtime 0), like a reproducible download."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def mirror_params(paths: dict[str, Path], train: int, test: int) -> list[str]:
    """`--params` that make a run fetch `paths` (from `make_mnist_files`) as file:// URLs with their md5s,
    and expect `train` and `test` images."""
    import hashlib

    params = []
    for key, path in paths.items():
        params += [
            f"ingestion.mnist.source.{key}.url={path.as_uri()}",
            f"ingestion.mnist.source.{key}.known_hash=md5:{hashlib.md5(path.read_bytes()).hexdigest()}",
        ]
    return [*params, f"ingestion.mnist.expected_counts.train={train}", f"ingestion.mnist.expected_counts.test={test}"]
