"""Nodes that fetch a dataset's raw archive and parse it into arrays."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from convbench.data.cifar import FORMATS, read_cifar_archive
from convbench.data.download import fetch
from convbench.data.fer2013 import SPLITS, check_counts, load_fer2013, locate_fer2013
from convbench.data.ferplus import FERPLUS_CLASS_NAMES, annotation_table, check_same_rows, load_ferplus
from convbench.data.image_folder import read_image_folder
from convbench.data.images import resize_images, to_rgb
from convbench.data.mnist import read_mnist
from convbench.data.tiny_imagenet import read_tiny_imagenet
from convbench.pipelines.preprocessing.nodes import resolve_size, stratified_sample

logger = logging.getLogger(__name__)

PARSED_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels", "class_names")
"""What every parser returns: uint8 NHWC images, integer labels, one name per class."""


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


def download_source(source: dict[str, Any]) -> str | dict[str, str]:
    """Local path(s) of a dataset's raw file(s): one `{url, known_hash, destination}`, or several by name."""
    return download_archive(source) if "url" in source else download_files(source)


def parse_with(raw_files: str | dict[str, str], options: dict[str, Any] | None, parser: str) -> dict[str, Any]:
    """The arrays a dataset's own parser (`"package.module:function"`) reads from its raw file(s).

    Raises:
        ValueError: The parser cannot be imported, or does not return every array ingestion stores.
    """
    module_name, _, function_name = parser.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"Cannot import the dataset parser {parser!r} ('package.module:function'): {exc}") from exc
    paths = Path(raw_files) if isinstance(raw_files, str) else {name: Path(path) for name, path in raw_files.items()}
    parsed = function(paths, **(options or {}))
    missing = [name for name in PARSED_ARRAYS if name not in parsed]
    if missing:
        raise ValueError(
            f"The dataset parser {parser} returned no {', '.join(missing)}; it must return {PARSED_ARRAYS}"
        )
    return {name: parsed[name] for name in PARSED_ARRAYS}


def parse_cifar_archive(
    archive_path: str, expected_counts: dict[str, int] | None, archive_format: str
) -> dict[str, Any]:
    """Images (uint8 NHWC, RGB), labels and class names read from a CIFAR binary archive.

    Args:
        archive_path: Path of `cifar-10-binary.tar.gz` or `cifar-100-binary.tar.gz`.
        expected_counts: Records expected per split, e.g. {train: 50000, test: 10000}; null skips.
        archive_format: "cifar10" or "cifar100" (the dataset's name).

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
    return {
        name: parsed[name] for name in ("train_images", "train_labels", "test_images", "test_labels", "class_names")
    }


def locate_fer2013_file(folder: str) -> str:
    """Path of `fer2013.csv` (or Kaggle's `fer2013.tar.gz`) in `folder`, which the user places there.

    Raises:
        FileNotFoundError: Neither is there; the message says where to get FER2013 and where to put it.
    """
    return str(locate_fer2013(folder))


def parse_ferplus_files(
    fer2013_path: str, ferplus_path: str, expected_counts: dict[str, int] | None, options: dict[str, Any]
) -> dict[str, Any]:
    """FER2013 faces (uint8) with the FERPlus crowd votes of each, joined row by row.

    The label scheme is applied later (preprocessing, `preprocessing.<dataset>.label_mode`), so the votes are kept
    as they are: `train_*` holds the Training and PublicTest rows (training and validation, chosen
    by `Usage` in preprocessing), `test_*` the PrivateTest rows.

    Args:
        fer2013_path: `fer2013.csv` or `fer2013.tar.gz`.
        ferplus_path: `fer2013new.csv`.
        expected_counts: Rows per split in the files, e.g. {train: 28709, val: 3589, test: 3589}; null skips.
        options: `image_size` (48 keeps the stored size; the FERPlus paper trains at 64, resized with
            OpenCV) and `channels` (1, or 3 for ImageNet-pretrained models).

    Returns:
        `train_images`, `test_images`, `train_annotations`, `test_annotations` (row, Usage, Image
        name and the 10 vote counts of every image), `class_names` (the 8 FERPlus emotions).

    Raises:
        FerFormatError: A file is malformed, a split has another row count than expected, or the
            files disagree (row count, `Usage` of a row).
    """
    votes = load_ferplus(ferplus_path)
    table = load_fer2013(fer2013_path)
    check_counts(table, expected_counts)
    check_same_rows(table, votes)
    images = _fer_images(table.images, options)
    development = np.flatnonzero(table.usage != SPLITS.index("test"))
    test = table.split_rows("test")
    return {
        "train_images": images[development],
        "test_images": images[test],
        "train_annotations": annotation_table(votes, development),
        "test_annotations": annotation_table(votes, test),
        "class_names": list(FERPLUS_CLASS_NAMES),
    }


def _fer_images(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    size, channels = int(options.get("image_size") or images.shape[1]), int(options.get("channels") or 1)
    if channels not in (1, 3):
        raise ValueError(f"ingestion option channels must be 1 or 3. Received: channels={channels}")
    images = resize_images(images, size) if size != images.shape[1] else images
    return to_rgb(images) if channels == 3 else images


def parse_image_folder(
    path: str,
    image_size: int | list[int],
    channels: int,
    test_size: float | int,
    seed: int,
    max_corrupt: int,
) -> dict[str, Any]:
    """Images (uint8, resized to `image_size` with `cv2.INTER_AREA`), labels and class names of a folder
    with one subfolder per class (`convbench.data.image_folder`), and the manifest of every file found.

    Without a `test/` folder, `test_size` (a share below 1, or a count) of the `train/` images
    becomes the test split: drawn per class with `seed` (`carve_test_split`); the manifest marks them.

    Returns:
        `train_images`, `train_labels`, `test_images`, `test_labels`, `class_names`, and
        `image_folder_manifest` (file, split, class, status `used`/`corrupt`/`not_an_image`, reason).
    """
    parsed = read_image_folder(path, image_size, channels, max_corrupt)
    manifest = parsed["manifest"]
    if not parsed["has_test_folder"]:
        labels, images = parsed["train_labels"], parsed["train_images"]
        train_rows, test_rows = carve_test_split(labels, test_size, seed)
        carved = manifest.index[(manifest["status"] == "used") & (manifest["split"] == "train")][test_rows]
        manifest.loc[carved, ["split", "reason"]] = ["test", f"carved from train/ (test_size {test_size}, seed {seed})"]
        logger.info(
            "%s has no test/ folder: %d of %d images carved out as the test split", path, len(test_rows), len(labels)
        )
        parsed |= {
            "train_images": images[train_rows],
            "train_labels": labels[train_rows],
            "test_images": images[test_rows],
            "test_labels": labels[test_rows],
        }
    return {**{name: parsed[name] for name in PARSED_ARRAYS}, "image_folder_manifest": manifest}


def carve_test_split(labels: np.ndarray, test_size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows of `labels`: `test_size` (a share below 1, or a count) drawn per class with
    `seed`, as the validation split is (`stratified_sample`). A class with one image keeps it for training.
    """
    eligible = np.flatnonzero(np.bincount(labels)[labels] >= 2)
    size = min(resolve_size(test_size, len(labels), "test_size"), len(eligible))
    test = np.sort(eligible[stratified_sample(labels[eligible], size, np.random.default_rng(int(seed)))])
    return np.setdiff1d(np.arange(len(labels)), test), test
