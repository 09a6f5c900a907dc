"""Nodes that fetch a dataset's raw archive and parse it into arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convbench.data.cifar import FORMATS, read_cifar_archive
from convbench.data.download import fetch
from convbench.data.mnist import read_mnist
from convbench.data.tiny_imagenet import read_tiny_imagenet


def download_archive(source: dict[str, Any]) -> str:
    """Local path of the raw archive `source` describes, downloaded and checksummed if not there yet.

    Args:
        source: `url`, `known_hash` (e.g. "md5:..."), `destination` (path under data/01_raw).

    Returns:
        The archive's path, as a string.
    """
    return str(fetch(source["url"], source.get("known_hash"), Path(source["destination"])))


def download_files(sources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Local paths of several raw files (`{name: {url, known_hash, destination}}`), each as `download_archive`."""
    return {name: download_archive(source) for name, source in sources.items()}


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


def parse_mnist_files(paths: dict[str, str], expected_counts: dict[str, int] | None) -> dict[str, Any]:
    """Images (uint8 [N,28,28,1]), labels and class names ("0".."9") read from the four MNIST idx files.

    Args:
        paths: `train_images`, `train_labels`, `test_images`, `test_labels` -> local file.
        expected_counts: Images expected per split, e.g. {train: 60000, test: 10000}; null skips.
    """
    return read_mnist({name: Path(path) for name, path in paths.items()}, expected_counts)


def parse_tiny_imagenet_archive(archive_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Images (uint8 RGB, downscaled to `options.image_size`), labels and class names from Tiny ImageNet's zip.

    The official validation set becomes the test split. Undecodable JPEGs are skipped up to
    `options.max_corrupt` (each one logged), beyond that the run stops and lists them.

    Args:
        archive_path: Path of `tiny-imagenet-200.zip`.
        options: `image_size`, `expected_classes`, `expected_per_class`, `expected_val`, `max_corrupt`.
    """
    parsed = read_tiny_imagenet(Path(archive_path), **options)
    return {name: parsed[name] for name in ("train_images", "train_labels", "test_images", "test_labels", "class_names")}
