"""Nodes that fetch a dataset's raw archive and parse it into arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.data.cifar import FORMATS, read_cifar_archive
from convbench.data.download import fetch


def download_archive(source: dict[str, Any]) -> str:
    """Local path of the raw archive `source` describes, downloaded and checksummed if not there yet.

    Args:
        source: `url`, `known_hash` (e.g. "md5:..."), `destination` (path under data/01_raw).

    Returns:
        The archive's path, as a string.
    """
    return str(fetch(source["url"], source.get("known_hash"), Path(source["destination"])))


def parse_cifar_archive(
    archive_path: str, archive_format: str, expected_counts: dict[str, int] | None
) -> dict[str, Any]:
    """Images (uint8 NHWC, RGB), labels and class names read from a CIFAR binary archive.

    Args:
        archive_path: Path of `cifar-10-binary.tar.gz` or `cifar-100-binary.tar.gz`.
        archive_format: "cifar10" or "cifar100".
        expected_counts: Records expected per split, e.g. {train: 50000, test: 10000}; null skips.

    Returns:
        `train_images`, `train_labels`, `test_images`, `test_labels`, `class_names`, plus
        `train_coarse_labels`, `test_coarse_labels`, `coarse_class_names` for CIFAR-100.
    """
    return read_cifar_archive(Path(archive_path), FORMATS[archive_format], expected_counts)
