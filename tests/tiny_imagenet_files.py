"""Build small Tiny ImageNet-200 zips in exactly the official layout, for tests.

Import as ``import tiny_imagenet_files`` (``tests/`` is on pytest's ``pythonpath``).

:func:`make_tiny_imagenet_zip` writes ``tiny-imagenet-200/`` with ``wnids.txt`` (not in
sorted order, like the real one), ``words.txt`` (more wnids than the classes, tab-separated),
``train/<wnid>/<wnid>_boxes.txt`` and ``train/<wnid>/images/<wnid>_<n>.JPEG``,
``val/val_annotations.txt`` and ``val/images/val_<n>.JPEG``, ``test/images/test_<n>.JPEG``,
with folder entries, deflate-compressed. Images are real 64x64 JPEGs (``cv2.imencode``), one
of them grayscale, and the first training image is pure red. The expected arrays are decoded
from the written JPEG bytes along another path than the parser's (BGR decode then channel
flip; grayscale decode then channel replication). A ``mutate`` hook edits the members before
writing, to build failure cases.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = "tiny-imagenet-200"
WNIDS = ("n02124075", "n04067472", "n01443537")
"""Fixture classes in label order (the first three lines of the real wnids.txt are not sorted either)."""
WORDS = {
    "n00001740": "entity",
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n04067472": "reel",
    "n04540053": "volleyball",
}
"""A few lines of the real words.txt, in its (sorted) order; it lists far more wnids than the classes."""
CLASS_NAMES = ["Egyptian cat", "reel", "goldfish"]
"""The class names the parser must return for :data:`WNIDS` (first name of each words.txt entry)."""

RED_MEMBER = f"{ROOT}/train/{WNIDS[0]}/images/{WNIDS[0]}_0.JPEG"
"""A training image that is pure red (RGB 255, 0, 0) before JPEG encoding."""
GRAY_CLASS, GRAY_INDEX = 1, 2
"""Class and number of the grayscale (1-channel) training JPEG."""
GRAY_MEMBER = f"{ROOT}/train/{WNIDS[GRAY_CLASS]}/images/{WNIDS[GRAY_CLASS]}_{GRAY_INDEX}.JPEG"
JPEG_QUALITY = 90

Members = dict[str, bytes]
"""Full member name (``tiny-imagenet-200/...``) -> bytes, in zip order."""


def smooth_image(rng: np.random.Generator, channels: int = 3) -> np.ndarray:
    """Return a 64x64 photo-like uint8 image: random 8x8 colours smoothly scaled up."""
    small = rng.integers(0, 256, size=(8, 8, channels), dtype=np.uint8)
    image = cv2.resize(small, (64, 64), interpolation=cv2.INTER_CUBIC)
    return image.reshape(64, 64, channels) if channels == 1 else image


def encode_jpeg(image: np.ndarray) -> bytes:
    """Return `image` (BGR, or 2-D grayscale) as JPEG bytes."""
    ok, encoded = cv2.imencode(".JPEG", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return encoded.tobytes()


def expected_rgb(jpeg: bytes, image_size: int, grayscale: bool = False) -> np.ndarray:
    """Decode `jpeg` to RGB the long way (BGR then flipped, or gray then replicated) and scale it."""
    if grayscale:
        gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        rgb = np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    else:
        rgb = np.ascontiguousarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR_BGR)[:, :, ::-1])
    if image_size != 64:
        rgb = cv2.resize(rgb, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return rgb


def make_tiny_imagenet_zip(
    path: str | Path,
    per_class: int = 4,
    val: int = 6,
    image_size: int = 32,
    seed: int = 0,
    *,
    wnids: tuple[str, ...] = WNIDS,
    mutate: Callable[[Members], Members] | None = None,
) -> dict:
    """Write a Tiny ImageNet-200 zip in the official layout and return the expected result.

    Args:
        path: Where to write the ``.zip``.
        per_class: Training images per class.
        val: Validation images; their classes cycle through `wnids` in a shuffled order.
        image_size: The size the expected images are scaled to.
        seed: Seed of the random images, boxes and validation labels.
        wnids: Classes in label order; each must be a key of :data:`WORDS`.
        mutate: Called with the members (full name -> bytes, in zip order) and returns the
            members to write instead.

    Returns:
        What :func:`convbench.data.tiny_imagenet.read_tiny_imagenet` must return at
        `image_size` for the zip before `mutate`, plus ``jpegs`` (member name -> JPEG bytes).
    """
    rng = np.random.default_rng(seed)
    members: Members = {f"{ROOT}/wnids.txt": "".join(f"{wnid}\n" for wnid in wnids).encode()}
    members[f"{ROOT}/words.txt"] = "".join(f"{wnid}\t{names}\n" for wnid, names in WORDS.items()).encode()
    jpegs: dict[str, bytes] = {}
    train_images, train_labels = [], []
    for label, wnid in enumerate(wnids):
        boxes = "".join(f"{wnid}_{n}.JPEG\t0\t0\t63\t63\n" for n in range(per_class))
        members[f"{ROOT}/train/{wnid}/{wnid}_boxes.txt"] = boxes.encode()
        for n in range(per_class):
            name = f"{ROOT}/train/{wnid}/images/{wnid}_{n}.JPEG"
            grayscale = name == GRAY_MEMBER
            if name == RED_MEMBER:
                image = np.zeros((64, 64, 3), np.uint8)
                image[:, :, 2] = 255  # OpenCV encodes BGR: red is the last channel
            else:
                image = smooth_image(rng, channels=1 if grayscale else 3)
            jpegs[name] = members[name] = encode_jpeg(image[:, :, 0] if grayscale else image)
            train_images.append(expected_rgb(jpegs[name], image_size, grayscale))
            train_labels.append(label)
    val_labels = rng.permutation(np.arange(val) % len(wnids)) if val else np.zeros(0, np.int64)
    annotations = ""
    test_images = []
    for n, label in enumerate(val_labels):
        name = f"{ROOT}/val/images/val_{n}.JPEG"
        jpegs[name] = members[name] = encode_jpeg(smooth_image(rng))
        x0, y0 = rng.integers(0, 32, size=2)
        annotations += f"val_{n}.JPEG\t{wnids[label]}\t{x0}\t{y0}\t{x0 + 20}\t{y0 + 25}\n"
        test_images.append(expected_rgb(jpegs[name], image_size))
    members[f"{ROOT}/val/val_annotations.txt"] = annotations.encode()
    members[f"{ROOT}/test/images/test_0.JPEG"] = encode_jpeg(smooth_image(rng))  # unlabelled: ignored
    write_zip(path, mutate(members) if mutate else members)
    names = [WORDS[wnid].split(",")[0] for wnid in wnids]
    return {
        "train_images": _stack(train_images, image_size),
        "train_labels": np.array(train_labels, dtype=np.int64),
        "test_images": _stack(test_images, image_size),
        "test_labels": np.asarray(val_labels, dtype=np.int64),
        "class_names": names,
        "wnids": list(wnids),
        "skipped": [],
        "jpegs": jpegs,
    }


def write_zip(path: str | Path, members: Members) -> Path:
    """Write `members` to a deflated zip, with a folder entry before each folder's first file.

    Names are written as given, unsafe ones (``../evil``, ``/abs``) included.
    """
    path = Path(path)
    folders_written: set[str] = set()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth]) + "/"
                if folder not in folders_written and name.startswith(f"{ROOT}/") and ".." not in parts[:depth]:
                    folders_written.add(folder)
                    zf.writestr(_info(folder, 0o40755), b"")
            zf.writestr(_info(name, 0o100644), data)
    return path


def append_symlink(path: str | Path, name: str, target: str) -> Path:
    """Append a symbolic-link entry `name` -> `target` to the zip at `path` (as ``zip --symlinks`` stores one)."""
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(_info(name, stat.S_IFLNK | 0o777), target.encode())
    return Path(path)


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut the file at `path` to `fraction` of its size (an interrupted download)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def corrupt_member_data(path: str | Path, member: str) -> Path:
    """Flip bytes in the middle of `member`'s compressed data, leaving the zip's structure intact."""
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    # Local header: 30 fixed bytes, then the name and the extra field (lengths at offsets 26 and 28).
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    start += int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    middle = start + info.compress_size // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))
    return path


def _stack(images: list[np.ndarray], image_size: int) -> np.ndarray:
    """Stack HWC images into one uint8 array (empty ones keep the right shape)."""
    if not images:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.stack(images).astype(np.uint8)


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    """Return a ZipInfo with a fixed date and the Unix `mode` (file type and permissions)."""
    info = zipfile.ZipInfo(name, date_time=(2015, 2, 18, 12, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    if name.endswith("/"):
        info.external_attr |= 0x10  # MS-DOS directory flag, as zip tools write it
    return info
