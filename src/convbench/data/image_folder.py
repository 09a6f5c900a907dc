"""Reads a folder of images, one subfolder per class, as torchvision's `ImageFolder` and Keras'
`image_dataset_from_directory` do:

    <path>/train/<class>/**/<image>     required: the class names are these folder names, sorted
    <path>/test/<class>/**/<image>      optional: else a seeded stratified test split is carved from train/

Images are PNG, JPEG or BMP files (by suffix, case-insensitive), colour or grey, at any size, in
any folder depth under their class folder. Every image is decoded with OpenCV and resized to the
declared size with `cv2.INTER_AREA`. Other files are left out and named in the log and the
manifest; hidden files (`.DS_Store`, `._*`) are skipped quietly. A symbolic link is followed only
when it points inside `<path>`: one that points outside stops the read (nothing outside the
declared folder is read). Files that cannot be decoded are skipped up to `max_corrupt`, each named
in the log; one more stops the read and lists them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from convbench.data.images import decode_image, resize_image
from convbench.dataset_specs import IMAGE_FOLDER_DEFAULTS

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
"""The files read as images (case-insensitive suffix)."""

SPLIT_FOLDERS = ("train", "test")

MAX_PIXELS = 10_000 * 10_000
"""Larger images (by their header) are refused as corrupt before decoding: a camera's photos fit,
a decompression bomb does not."""

MANIFEST_COLUMNS = ["file", "split", "class", "status", "reason"]
"""One row per file found: its path under the folder, split, class, and `used`, `corrupt` or `not_an_image`."""


class ImageFolderError(ValueError):
    """The folder cannot be read as an image-folder dataset; the message names the file and the fix."""


@dataclass(frozen=True)
class FoundFile:
    path: Path
    relative: str
    split: str
    class_name: str


def read_image_folder(
    path: str | Path,
    image_size: int | list[int] = IMAGE_FOLDER_DEFAULTS["image_size"],
    channels: int = IMAGE_FOLDER_DEFAULTS["channels"],
    max_corrupt: int = IMAGE_FOLDER_DEFAULTS["max_corrupt"],
) -> dict[str, Any]:
    """The images of `path` (see the module docstring) as the arrays every ingestion stores.

    Args:
        path: The dataset folder, holding `train/` and optionally `test/`.
        image_size: Height and width every image is resized to: one number, or [height, width].
        channels: 3 (RGB; grey images repeated) or 1 (grey; colour images converted).
        max_corrupt: How many undecodable files may be skipped (each logged).

    Returns:
        `train_images`, `train_labels` (train/), `test_images`, `test_labels` (test/, empty without
        it) as uint8 NHWC and int64, `class_names`, `manifest` (every file found, `MANIFEST_COLUMNS`,
        in the order of the arrays for the used ones) and `has_test_folder`.

    Raises:
        ImageFolderError: The folder or `train/` is missing, has fewer than two classes, a class
            of `test/` is not one of `train/`, a link points outside the folder, a class has no
            image, or more than `max_corrupt` files cannot be decoded.
    """
    root = Path(path)
    height, width = _size(image_size)
    if int(channels) not in (1, 3):
        raise ImageFolderError(f"channels must be 1 or 3 for {root}. Received: channels={channels!r}")
    train_root = root / "train"
    if not train_root.is_dir():
        raise ImageFolderError(
            f"{train_root} is not a folder. An image-folder dataset holds train/<class>/<image> "
            f"(and optionally test/<class>/<image>) under {root.resolve()}"
        )
    class_names = _class_folders(train_root, root)
    if len(class_names) < 2:
        raise ImageFolderError(
            f"{train_root} has {len(class_names)} class folder(s) ({', '.join(class_names) or 'none'}); "
            "a classifier needs at least two: one subfolder per class"
        )
    splits = [split for split in SPLIT_FOLDERS if (root / split).is_dir()]
    if "test" in splits:
        unknown = sorted(set(_class_folders(root / "test", root)) - set(class_names))
        if unknown:
            raise ImageFolderError(
                f"{root / 'test'} has class folder(s) {unknown} that train/ has not: every test class needs training images"
            )
    found, others = [], []
    for split in splits:
        for class_name in class_names:
            for file in _files(root / split / class_name, root):
                entry = FoundFile(file, file.relative_to(root).as_posix(), split, class_name)
                (found if file.suffix.lower() in IMAGE_SUFFIXES else others).append(entry)
    if others:
        logger.warning(
            "%s: left out %d file(s) that are not PNG/JPEG/BMP: %s",
            root,
            len(others),
            ", ".join(entry.relative for entry in others[:20]) + (" ..." if len(others) > 20 else ""),
        )
    images, failures = _decode_all(found, (height, width), int(channels))
    corrupt = [(entry, failures[index]) for index, entry in enumerate(found) if index in failures]
    for entry, reason in corrupt:
        logger.warning("%s: skipped %s, which could not be read as an image: %s", root, entry.relative, reason)
    if len(corrupt) > int(max_corrupt):
        listed = "\n".join(f"  {entry.relative}: {reason}" for entry, reason in corrupt[:20])
        raise ImageFolderError(
            f"{root}: {len(corrupt)} file(s) could not be read as images, more than max_corrupt={max_corrupt}:\n{listed}\n"
            f"Remove or replace them, or allow skipping with ingestion.<dataset>.max_corrupt: {len(corrupt)}"
        )
    used = [index for index in range(len(found)) if index not in failures]
    labels = np.array([class_names.index(found[index].class_name) for index in used], dtype=np.int64)
    pixels = np.stack([images[index] for index in used]) if used else np.empty((0, height, width, channels), np.uint8)
    is_test = np.array([found[index].split == "test" for index in used], dtype=bool)
    _check_every_class_has_images(labels[~is_test], class_names, train_root)
    manifest = pd.DataFrame(
        [[entry.relative, entry.split, entry.class_name, "used", ""] for entry in (found[index] for index in used)]
        + [[entry.relative, entry.split, entry.class_name, "corrupt", reason] for entry, reason in corrupt]
        + [
            [entry.relative, entry.split, entry.class_name, "not_an_image", "not a .png/.jpg/.jpeg/.bmp file"]
            for entry in others
        ],
        columns=MANIFEST_COLUMNS,
    )
    return {
        "train_images": pixels[~is_test],
        "train_labels": labels[~is_test],
        "test_images": pixels[is_test],
        "test_labels": labels[is_test],
        "class_names": class_names,
        "manifest": manifest,
        "has_test_folder": "test" in splits,
    }


def _size(image_size: int | list[int]) -> tuple[int, int]:
    values = [image_size] * 2 if isinstance(image_size, int) else list(image_size)
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise ImageFolderError(f"image_size must be a positive number or [height, width]. Received: {image_size!r}")
    return values[0], values[1]


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _refuse_outside(path: Path, root: Path) -> None:
    if path.is_symlink() and not _inside(path, root):
        raise ImageFolderError(
            f"{path} is a link to {path.resolve()}, outside the dataset folder {root.resolve()}: links are followed "
            "only inside it. Copy the file(s) into the folder instead."
        )


def _class_folders(split_root: Path, root: Path) -> list[str]:
    names = []
    for entry in sorted(split_root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        _refuse_outside(entry, root)
        names.append(entry.name)
    return names


def _files(folder: Path, root: Path) -> Iterator[Path]:
    """Every visible file under `folder`, sorted by path, following links that stay inside `root`
    (each folder once: a link back to a folder already read is not followed again)."""
    _refuse_outside(folder, root)
    seen = {folder.resolve()}
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        base = Path(directory)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in subfolders:
            _refuse_outside(base / name, root)
        subfolders[:] = [name for name in subfolders if (base / name).resolve() not in seen]
        seen.update((base / name).resolve() for name in subfolders)
        for name in sorted(files):
            if name.startswith("."):
                continue
            file = base / name
            _refuse_outside(file, root)
            yield file


def _decode_all(
    found: list[FoundFile], size: tuple[int, int], channels: int
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Every file decoded and resized (OpenCV releases the GIL, so threads decode in parallel)."""

    def decode(entry: FoundFile) -> np.ndarray:
        image = decode_image(entry.path.read_bytes(), channels, entry.relative, max_pixels=MAX_PIXELS)
        return resize_image(image, size, interpolation=cv2.INTER_AREA)

    images, failures = {}, {}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(decode, entry) for entry in found]
        for index, future in enumerate(futures):
            try:
                images[index] = future.result()
            except (ValueError, OSError, cv2.error) as exc:
                failures[index] = str(exc).removeprefix(f"{found[index].relative}: ")
    return images, failures


def _check_every_class_has_images(labels: np.ndarray, class_names: list[str], train_root: Path) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise ImageFolderError(
            f"{train_root}: class folder(s) {empty} hold no readable PNG/JPEG/BMP image: add images or remove the folder"
        )
