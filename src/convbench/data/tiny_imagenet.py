"""Read Tiny ImageNet-200 straight from the official ``tiny-imagenet-200.zip``.

Layout (under ``tiny-imagenet-200/``): ``wnids.txt`` (the 200 WordNet ids, one a line;
their order gives the labels), ``words.txt`` (``wnid<TAB>names`` for every WordNet id),
``train/<wnid>/images/<wnid>_<n>.JPEG`` (500 per class), ``val/images/val_<n>.JPEG``
labelled by ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box``), and ``test/``
(unlabelled, ignored). The official validation set becomes the test split.

Members are read from the zip one at a time (nothing is extracted) and decoded with
OpenCV into RGB (grayscale JPEGs are replicated into three channels), then scaled from
64x64 to the wanted size with ``cv2.INTER_AREA``. The output arrays are allocated once,
so memory stays at the size of the result plus one JPEG. A JPEG that cannot be decoded
is skipped and reported, up to ``max_corrupt`` of them.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError, check_member_name, describe_member

logger = logging.getLogger(__name__)

T = TypeVar("T")

ROOT = "tiny-imagenet-200"
"""Folder inside the zip that holds everything."""

WNIDS_MEMBER = f"{ROOT}/wnids.txt"
WORDS_MEMBER = f"{ROOT}/words.txt"
VAL_ANNOTATIONS_MEMBER = f"{ROOT}/val/val_annotations.txt"

NUM_CLASSES = 200
"""Classes (lines of ``wnids.txt``) in the official zip."""

TRAIN_PER_CLASS = 500
"""Training images per class in the official zip."""

VAL_IMAGES = 10_000
"""Images in the official validation set (50 per class), our test split."""

SOURCE_SIZE = 64
"""Height and width of every image in the zip, in pixels."""

DEFAULT_IMAGE_SIZE = 32
"""Height and width the images are scaled to unless told otherwise (as in the seed work)."""

LABEL_DTYPE = np.int64
"""Dtype of the label arrays."""

WNID_PATTERN = re.compile(r"n\d{8}")
"""A WordNet noun id, e.g. ``n01443537``."""

_TRAIN_IMAGE = re.compile(rf"{re.escape(ROOT)}/train/(?P<wnid>[^/]+)/images/(?P<file>[^/]+)")
_VAL_IMAGE = re.compile(rf"{re.escape(ROOT)}/val/images/(?P<file>[^/]+)")
_IMAGE_SUFFIX = ".JPEG"

_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = b"\xff\xda"
_JPEG_EOI = b"\xff\xd9"
_IMREAD_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
"""Decode any JPEG (grayscale included) to 3-channel RGB, ignoring EXIF rotation (pixels as stored)."""

_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
"""Exceptions that mean "this zip or one of its members is damaged or unreadable"."""

_LISTED = 10
"""Items named in an error message before "... (N in all)"."""


class CorruptImageError(ValueError):
    """The bytes of an image member are not a complete JPEG of the expected size."""


class _Item(NamedTuple):
    """One image to read: its zip entry and its label."""

    info: zipfile.ZipInfo
    label: int


def read_tiny_imagenet(
    archive: str | os.PathLike[str],
    image_size: int = DEFAULT_IMAGE_SIZE,
    *,
    expected_classes: int | None = NUM_CLASSES,
    expected_per_class: int | None = TRAIN_PER_CLASS,
    expected_val: int | None = VAL_IMAGES,
    max_corrupt: int = 0,
    progressbar: bool = True,
) -> dict[str, Any]:
    """Read Tiny ImageNet-200's training and validation images from the official zip.

    Every member name in the zip is checked for path traversal (even though nothing is
    extracted), and the layout is checked in full before any image is decoded.

    Args:
        archive: Path of ``tiny-imagenet-200.zip``.
        image_size: Height and width of the returned images, 1 to 64 (64 keeps them as
            stored; smaller sizes are scaled with ``cv2.INTER_AREA``).
        expected_classes: Number of wnids in ``wnids.txt``; None skips the check.
        expected_per_class: Training images in each class folder; None skips the check.
        expected_val: Validation images (annotated and present); None skips the check.
        max_corrupt: How many undecodable images (train and validation together) may be
            skipped; one more makes it an error that lists them all.
        progressbar: Whether to show tqdm progress bars on stderr.

    Returns:
        A dict with ``train_images`` and ``test_images`` (``uint8``, ``(N, image_size,
        image_size, 3)``, RGB), ``train_labels`` and ``test_labels`` (``int64``, indices
        into ``wnids``), ``class_names`` (per label: the first name of the wnid's
        ``words.txt`` entry, e.g. ``"goldfish"``, followed by `` (<wnid>)`` when two
        classes share it), ``wnids`` (in ``wnids.txt`` order) and ``skipped`` (one
        ``{"split", "member", "reason"}`` dict per image left out). Training images are
        ordered by class, then by the number in their file name; test images by number.

    Raises:
        UnsafeArchiveError: A member path is absolute or contains ``..``, or a member
            that is read is a symbolic link.
        ArchiveFormatError: The file is not a zip or is truncated, a member is corrupt,
            a text file is missing or malformed, a wnid is unknown or missing, a class
            folder is missing, a count differs from the expected one, or more than
            `max_corrupt` images cannot be decoded. The message names the zip, the
            member (and line) and what was expected versus found.
        FileNotFoundError: `archive` does not exist.
        ValueError: `image_size` is not 1-64 or `max_corrupt` is negative.
    """
    if not 1 <= image_size <= SOURCE_SIZE:
        raise ValueError(
            f"image_size must be 1-{SOURCE_SIZE} (images are only scaled down). Received: image_size={image_size}"
        )
    if max_corrupt < 0:
        raise ValueError(f"max_corrupt must be 0 or more. Received: max_corrupt={max_corrupt}")
    archive = Path(archive)
    with _open_zip(archive) as zf:
        members = _index_members(archive, zf)
        wnids_text = _read_text_member(archive, zf, members, WNIDS_MEMBER)
        wnids = parse_wnids(wnids_text, expected_classes, source=describe_member(archive, WNIDS_MEMBER))
        words_text = _read_text_member(archive, zf, members, WORDS_MEMBER)
        class_names = parse_words(words_text, wnids, source=describe_member(archive, WORDS_MEMBER))
        train = _train_items(archive, members, wnids, expected_per_class)
        annotations = _read_text_member(archive, zf, members, VAL_ANNOTATIONS_MEMBER)
        test = _val_items(archive, members, annotations, wnids, expected_val)
        train_images, train_labels, train_skipped = _decode_split(archive, zf, "train", train, image_size, progressbar)
        test_images, test_labels, test_skipped = _decode_split(archive, zf, "test", test, image_size, progressbar)
    skipped = train_skipped + test_skipped
    _check_corrupt(archive, skipped, max_corrupt)
    logger.info(
        "Read Tiny ImageNet-200 from %s: %d train and %d test images at %dx%d, %d skipped",
        archive,
        train_images.shape[0],
        test_images.shape[0],
        image_size,
        image_size,
        len(skipped),
    )
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "class_names": class_names,
        "wnids": wnids,
        "skipped": skipped,
    }


def decode_image(data: bytes, image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Decode one Tiny ImageNet JPEG into an RGB ``uint8`` array of shape ``(image_size, image_size, 3)``.

    Grayscale JPEGs come out with the gray value in all three channels. Images are scaled
    from 64x64 with ``cv2.INTER_AREA`` (pixel-area averaging) unless `image_size` is 64.

    Args:
        data: The JPEG file's bytes.
        image_size: Height and width of the result.

    Returns:
        The image, height x width x (red, green, blue).

    Raises:
        CorruptImageError: The bytes are not a JPEG, the JPEG is truncated (no
            end-of-image marker after its last scan, which libjpeg would silently fill
            with gray), OpenCV cannot decode it, or it is not 64x64.
    """
    if not data.startswith(_JPEG_SOI):
        found = data[:4].hex(" ") or "none"
        raise CorruptImageError(f"expected a JPEG (starting with bytes ff d8), found bytes {found}")
    if data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS):
        raise CorruptImageError(
            "expected an end-of-image marker (ff d9) after the last scan, found none: the JPEG is truncated"
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    if image is None:
        raise CorruptImageError("expected a decodable JPEG, but OpenCV could not decode it")
    if image.shape[:2] != (SOURCE_SIZE, SOURCE_SIZE):
        height, width = image.shape[:2]
        raise CorruptImageError(
            f"expected a {SOURCE_SIZE}x{SOURCE_SIZE} image, found {width}x{height} (width x height)"
        )
    if image_size != SOURCE_SIZE:
        image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return image


def parse_wnids(text: bytes, expected_classes: int | None, *, source: str) -> list[str]:
    """Return the wnids listed one a line in `text` (``wnids.txt``), in order.

    Args:
        text: Contents of ``wnids.txt``.
        expected_classes: How many wnids there must be; None skips the check.
        source: Where the text comes from, used in error messages.

    Raises:
        ArchiveFormatError: A line is not a wnid (``n`` and 8 digits), a wnid occurs
            twice, or the count differs from `expected_classes`.
    """

    def wnid_of(number: int, line: str) -> tuple[str, None]:
        if not WNID_PATTERN.fullmatch(wnid := line.strip()):
            raise ArchiveFormatError(
                f"line {number}: expected a wnid such as 'n01443537', found {line!r}", archive=source
            )
        return wnid, None

    wnids = [wnid for wnid, _ in _unique_lines(text, source, wnid_of, "wnid {!r} occurs twice")]
    if expected_classes is not None and len(wnids) != expected_classes:
        raise ArchiveFormatError(f"expected {expected_classes:,} wnids, found {len(wnids):,}", archive=source)
    return wnids


def parse_words(text: bytes, wnids: Sequence[str], *, source: str) -> list[str]:
    """Return a class name for each wnid from `text` (``words.txt``: ``wnid<TAB>name, name, ...``).

    A class's name is the first comma-separated name of its entry (``"goldfish"`` for
    ``"goldfish, Carassius auratus"``); classes that would share a name get `` (<wnid>)``
    appended, so names stay unique. Lines of other wnids are not looked at beyond their id
    (``words.txt`` lists all of WordNet's 82,115 nouns).

    Args:
        text: Contents of ``words.txt``.
        wnids: The wnids to name, in label order.
        source: Where the text comes from, used in error messages.

    Raises:
        ArchiveFormatError: A wanted wnid's line has no tab or no name, is not UTF-8, or
            occurs twice, or a wanted wnid has no line.
    """
    wanted = {wnid.encode("ascii") for wnid in wnids}
    names: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key, tab, value = line.partition(b"\t")
        key = key.strip() if tab else (line.split(maxsplit=1) or [b""])[0]  # a wnid followed by spaces
        if key not in wanted:
            continue
        wnid = key.decode("ascii")
        name = _decode_text(value, f"{source}, line {number}").split(",")[0].strip()
        if not tab or not name:
            raise ArchiveFormatError(
                f"line {number}: expected 'wnid<TAB>name, name, ...', found {line.decode('utf-8', 'replace')!r}",
                archive=source,
            )
        if wnid in first_line:
            raise ArchiveFormatError(
                f"line {number}: wnid {wnid!r} occurs twice (also line {first_line[wnid]})", archive=source
            )
        first_line[wnid] = number
        names[wnid] = name
    missing = [wnid for wnid in wnids if wnid not in names]
    if missing:
        raise ArchiveFormatError(
            f"expected a line for every wnid of wnids.txt, found none for {_listing(missing)}", archive=source
        )
    return _unique_names([names[wnid] for wnid in wnids], wnids)


def _unique_names(names: list[str], wnids: Sequence[str]) -> list[str]:
    """Return `names` with `` (<wnid>)`` appended to each name that occurs more than once."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} ({wnid})" if counts[name] > 1 else name for name, wnid in zip(names, wnids)]


@contextmanager
def _open_zip(archive: Path) -> Iterator[zipfile.ZipFile]:
    """Open `archive` for reading, turning "not a zip / truncated" into ArchiveFormatError."""
    if not archive.is_file():
        raise FileNotFoundError(f"No archive at {archive}")
    with _zip_errors(archive, "a complete zip archive, but it is not one or is truncated (an interrupted download?)"):
        zf = zipfile.ZipFile(archive)
    with zf:
        yield zf


@contextmanager
def _zip_errors(archive: Path, expected: str, member: str | None = None) -> Iterator[None]:
    """Turns zipfile's errors into an ArchiveFormatError: `expected <expected> (<error>)`."""
    try:
        yield
    except _ZIP_ERRORS as exc:
        raise ArchiveFormatError(
            f"expected {expected} ({type(exc).__name__}: {exc})", archive=archive, member=member
        ) from exc


def _index_members(archive: Path, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Return the zip's file entries by name, after checking every name (folders included)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        check_member_name(archive, info.filename)
        if info.is_dir():
            continue
        if info.filename in members:
            raise ArchiveFormatError(
                "expected one member of this name, found it twice", archive=archive, member=info.filename
            )
        members[info.filename] = info
    return members


def _read_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Return a member's bytes (CRC-checked), refusing symbolic links."""
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(
            "expected a regular file, found a symbolic link", archive=archive, member=info.filename
        )
    with _zip_errors(archive, "the member's complete, intact data, but the archive is corrupt", info.filename):
        return zf.read(info)


def _read_text_member(archive: Path, zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], name: str) -> bytes:
    """Return the bytes of the text member `name`, which must exist."""
    info = members.get(name)
    if info is None:
        raise ArchiveFormatError(
            f"expected member {name!r}, but it is missing; the zip holds {len(members):,} files "
            f"(first: {_listing(sorted(members))})",
            archive=archive,
        )
    return _read_member(archive, zf, info)


def _train_items(
    archive: Path, members: dict[str, zipfile.ZipInfo], wnids: list[str], expected_per_class: int | None
) -> list[_Item]:
    """Return the training images in label order, each class's by file number, checking the class folders."""
    by_wnid: dict[str, list[zipfile.ZipInfo]] = {}
    for name, info in members.items():
        match = _TRAIN_IMAGE.fullmatch(name)
        if match is not None:
            _check_image_name(archive, name, match["file"])
            by_wnid.setdefault(match["wnid"], []).append(info)
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    unknown = sorted(set(by_wnid) - set(label_of))
    _refuse_any(unknown, archive, "train/ folders only for the wnids of wnids.txt", found="")
    missing = [wnid for wnid in wnids if wnid not in by_wnid]
    _refuse_any(missing, archive, f"a folder {ROOT}/train/<wnid>/images/ with images for every wnid")
    if expected_per_class is not None:
        wrong = [f"{wnid}: {len(by_wnid[wnid])}" for wnid in wnids if len(by_wnid[wnid]) != expected_per_class]
        _refuse_any(wrong, archive, f"{expected_per_class:,} training images per class", found="other counts for ")
    return [
        _Item(info, label_of[wnid])
        for wnid in wnids
        for info in sorted(by_wnid[wnid], key=lambda info: _natural_key(info.filename))
    ]


def _val_items(
    archive: Path,
    members: dict[str, zipfile.ZipInfo],
    annotations: bytes,
    wnids: list[str],
    expected_val: int | None,
) -> list[_Item]:
    """Return the validation images with their labels from ``val_annotations.txt``, by file number."""
    images: dict[str, zipfile.ZipInfo] = {}
    for name, info in members.items():
        match = _VAL_IMAGE.fullmatch(name)
        if match is not None:
            _check_image_name(archive, name, match["file"])
            images[match["file"]] = info
    labels = parse_val_annotations(annotations, wnids, source=describe_member(archive, VAL_ANNOTATIONS_MEMBER))
    missing = [file for file in labels if file not in images]
    _refuse_any(missing, archive, f"an image in {ROOT}/val/images/ for every line of val_annotations.txt")
    unlabelled = sorted(set(images) - set(labels), key=_natural_key)
    _refuse_any(unlabelled, archive, f"a line of val_annotations.txt for every image in {ROOT}/val/images/")
    if expected_val is not None and len(labels) != expected_val:
        raise ArchiveFormatError(f"expected {expected_val:,} validation images, found {len(labels):,}", archive=archive)
    return [_Item(images[file], labels[file]) for file in sorted(labels, key=_natural_key)]


def parse_val_annotations(text: bytes, wnids: Sequence[str], *, source: str) -> dict[str, int]:
    """Return the label of each validation image named in `text` (``val_annotations.txt``).

    Each non-blank line is ``file<TAB>wnid`` followed by the bounding box (which is not used).

    Args:
        text: Contents of ``val_annotations.txt``.
        wnids: The wnids in label order.
        source: Where the text comes from, used in error messages.

    Returns:
        File name (e.g. ``"val_0.JPEG"``) -> label, in line order.

    Raises:
        ArchiveFormatError: A line has fewer than two tab-separated fields, names a wnid
            that is not in `wnids`, or names a file already named.
    """
    label_of = {wnid: label for label, wnid in enumerate(wnids)}

    def file_and_label(number: int, line: str) -> tuple[str, int]:
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            raise ArchiveFormatError(f"line {number}: expected 'file<TAB>wnid<TAB>box', found {line!r}", archive=source)
        file, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label_of:
            raise ArchiveFormatError(
                f"line {number}: expected a wnid of wnids.txt for {file!r}, found {wnid!r}", archive=source
            )
        return file, label_of[wnid]

    labels = dict(_unique_lines(text, source, file_and_label, "{!r} is annotated twice"))
    return labels


def _check_image_name(archive: Path, name: str, file: str) -> None:
    """Raise if a member in an images folder is not a ``.JPEG`` file."""
    if not file.endswith(_IMAGE_SUFFIX):
        raise ArchiveFormatError(
            f"expected only {_IMAGE_SUFFIX} files in images folders, found another file", archive=archive, member=name
        )


def _decode_split(
    archive: Path, zf: zipfile.ZipFile, split: str, items: list[_Item], image_size: int, progressbar: bool
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Decode `items` one at a time into preallocated arrays; return images, labels and the skipped members."""
    images = np.empty((len(items), image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty(len(items), dtype=LABEL_DTYPE)
    skipped: list[dict[str, str]] = []
    kept = 0
    progress = tqdm(items, desc=f"Tiny ImageNet {split}", unit="img", file=sys.stderr, disable=not progressbar)
    for info, label in progress:
        data = _read_member(archive, zf, info)
        try:
            images[kept] = decode_image(data, image_size)
        except CorruptImageError as exc:
            logger.warning("Skipping %s, member %r: %s", archive, info.filename, exc)
            skipped.append({"split": split, "member": info.filename, "reason": str(exc)})
            continue
        labels[kept] = label
        kept += 1
    if kept < len(items):
        images, labels = images[:kept].copy(), labels[:kept].copy()
    return images, labels, skipped


def _check_corrupt(archive: Path, skipped: list[dict[str, str]], max_corrupt: int) -> None:
    """Raise if more images were skipped than `max_corrupt` allows, listing them."""
    if len(skipped) <= max_corrupt:
        return
    listed = "; ".join(f"{item['member']!r} ({item['reason']})" for item in skipped[:_LISTED])
    more = f" ... ({len(skipped):,} in all)" if len(skipped) > _LISTED else ""
    raise ArchiveFormatError(
        f"expected at most max_corrupt={max_corrupt} undecodable images, found {len(skipped):,}: {listed}{more}. "
        f"Set max_corrupt to {len(skipped)} or more to skip them.",
        archive=archive,
    )


def _decode_text(text: bytes, source: str) -> str:
    """Return `text` decoded as UTF-8, or raise ArchiveFormatError naming `source`."""
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveFormatError(f"expected UTF-8 text, found {exc}", archive=source) from exc


def _unique_lines(
    text: bytes, source: str, entry: Callable[[int, str], tuple[str, T]], twice: str
) -> Iterator[tuple[str, T]]:
    """`entry(number, line)` (a key and a value; it raises on a bad line) of each non-blank line of
    `text`, refusing a key seen on an earlier line: `line <number>: <twice with the key> (also line <n>)`."""
    first_line: dict[str, int] = {}
    for number, line in enumerate(_decode_text(text, source).splitlines(), start=1):
        if not line.strip():
            continue
        key, value = entry(number, line)
        if key in first_line:
            raise ArchiveFormatError(
                f"line {number}: {twice.format(key)} (also line {first_line[key]})", archive=source
            )
        first_line[key] = number
        yield key, value


def _refuse_any(names: list[str], archive: Path, expected: str, found: str = "none for ") -> None:
    """An ArchiveFormatError `expected <expected>, found <found><names>` unless `names` is empty."""
    if names:
        raise ArchiveFormatError(f"expected {expected}, found {found}{_listing(names)}", archive=archive)


def _natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key that orders the numbers in a name by value (``x_2`` before ``x_10``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _listing(items: Sequence[str]) -> str:
    """Return the first few `items` joined by commas, with the total when some are left out."""
    shown = ", ".join(items[:_LISTED])
    return shown + (f" ... ({len(items):,} in all)" if len(items) > _LISTED else "")
