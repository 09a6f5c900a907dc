"""Parse the binary versions of CIFAR-10 and CIFAR-100 straight from their ``.tar.gz`` archives.

The format facts live in one place, :class:`CifarFormat` (instances :data:`CIFAR10` and
:data:`CIFAR100`). A record is one label byte per label field (CIFAR-10: the class;
CIFAR-100: coarse, then fine), then 3,072 pixel bytes: the red, green and blue 32x32
planes, each row-major. Decoding is vectorised with NumPy and returns images as
``uint8`` arrays of shape ``(N, 32, 32, 3)`` (HWC, RGB, C-contiguous).

Only the binary versions are read: the python versions are pickles, and unpickling
downloaded data runs code. Download URLs and checksums are Kedro parameters, not facts
kept here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from convbench.data.archives import ArchiveFormatError, describe_member, iter_tar_members
from convbench.data.checks import out_of_range

logger = logging.getLogger(__name__)

IMAGE_SIZE = 32
"""Height and width of a CIFAR image, in pixels."""

CHANNELS = 3
"""Colour planes per record: red, green, blue, in that order."""

PIXEL_BYTES = CHANNELS * IMAGE_SIZE * IMAGE_SIZE
"""Bytes of pixel data per record (3,072)."""

LABEL_DTYPE = np.int64
"""Dtype of the label arrays returned by the parsers."""


class LabelField(NamedTuple):
    """One label byte of a record.

    Attributes:
        name: Field name: ``"label"`` (CIFAR-10), ``"coarse"`` or ``"fine"`` (CIFAR-100).
        num_classes: Number of classes; valid values are ``0 .. num_classes - 1``.
        names_member: File in the archive's folder listing the class names, one a line.
    """

    name: str
    num_classes: int
    names_member: str


@dataclass(frozen=True)
class CifarFormat:
    """Layout of one CIFAR binary archive.

    Attributes:
        name: Human-readable name, used in messages (``"CIFAR-10"``).
        member_dir: Folder inside the archive that holds every member.
        train_members: Training files, in the order their records are concatenated.
        test_members: Test files, in order.
        label_fields: The label bytes at the start of each record, in byte order.
        record_bytes: Bytes per record: one per label field plus 3,072 pixel bytes.
        primary_label: The label field returned as ``*_labels`` / ``class_names``;
            any other field ``x`` is returned as ``*_x_labels`` / ``x_class_names``.
    """

    name: str
    member_dir: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    label_fields: tuple[LabelField, ...]
    record_bytes: int
    primary_label: str

    def __post_init__(self) -> None:
        if self.record_bytes != len(self.label_fields) + PIXEL_BYTES:
            raise ValueError(
                f"record_bytes must be {len(self.label_fields)} label byte(s) + {PIXEL_BYTES} pixel bytes. "
                f"Received: record_bytes={self.record_bytes}"
            )
        if self.primary_label not in {field.name for field in self.label_fields}:
            raise ValueError(f"primary_label must name a label field. Received: primary_label={self.primary_label!r}")

    @property
    def label_bytes(self) -> int:
        """Number of label bytes at the start of each record."""
        return len(self.label_fields)

    def member(self, filename: str) -> str:
        """Return the archive path of `filename` (e.g. ``"cifar-10-batches-bin/test_batch.bin"``)."""
        return f"{self.member_dir}/{filename}"

    def split_members(self, split: str) -> tuple[str, ...]:
        """Return the files of `split` (``"train"`` or ``"test"``)."""
        if split == "train":
            return self.train_members
        if split == "test":
            return self.test_members
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")


CIFAR10 = CifarFormat(
    name="CIFAR-10",
    member_dir="cifar-10-batches-bin",
    train_members=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_members=("test_batch.bin",),
    label_fields=(LabelField("label", 10, "batches.meta.txt"),),
    record_bytes=3073,
    primary_label="label",
)
"""CIFAR-10, binary version (``cifar-10-binary.tar.gz``)."""

CIFAR100 = CifarFormat(
    name="CIFAR-100",
    member_dir="cifar-100-binary",
    train_members=("train.bin",),
    test_members=("test.bin",),
    label_fields=(
        LabelField("coarse", 20, "coarse_label_names.txt"),
        LabelField("fine", 100, "fine_label_names.txt"),
    ),
    record_bytes=3074,
    primary_label="fine",
)
"""CIFAR-100, binary version (``cifar-100-binary.tar.gz``): coarse label byte, then fine."""

FORMATS: dict[str, CifarFormat] = {"cifar10": CIFAR10, "cifar100": CIFAR100}
"""The formats by dataset key."""

SPLITS = ("train", "test")


def parse_records(buffer: bytes, fmt: CifarFormat, *, source: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Decode the records of one CIFAR binary file.

    Args:
        buffer: The file's bytes (any bytes-like object), a whole number of records.
        fmt: The dataset's format (:data:`CIFAR10` or :data:`CIFAR100`).
        source: Where the bytes come from (file or archive member), used in error messages.

    Returns:
        ``(images, labels)``: ``images`` is a C-contiguous ``uint8`` array of shape
        ``(N, 32, 32, 3)`` (height, width, RGB channels); ``labels`` maps each label
        field name (``"label"``, or ``"coarse"`` and ``"fine"``) to an ``int64``
        array of shape ``(N,)``.

    Raises:
        ArchiveFormatError: The size is not a multiple of the record size (the message
            gives the size, the record size and the index of the incomplete record), or a
            label is out of range (the message gives the index of the first bad record, the
            field, the value and the allowed range).
    """
    records = _as_records(buffer, fmt, source)
    images, labels = _allocate(fmt, records.shape[0])
    _decode_into(records, fmt, source, images, labels)
    return images, labels


def read_cifar_archive(
    archive: str | os.PathLike[str], fmt: CifarFormat, expected_counts: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Read a CIFAR binary ``.tar.gz`` into arrays and class names, in one pass over the archive.

    The archive is streamed (nothing is extracted to disk, nothing is unpickled); each
    data file is decoded on a second thread while the next one is decompressed.

    Args:
        archive: Path of ``cifar-10-binary.tar.gz`` or ``cifar-100-binary.tar.gz``.
        fmt: :data:`CIFAR10` or :data:`CIFAR100`.
        expected_counts: Record count per split, e.g. ``{"train": 50000, "test": 10000}``;
            None skips the check. Keys other than ``"train"``/``"test"`` are refused.

    Returns:
        A dict with ``train_images`` and ``test_images`` (``uint8``, ``(N, 32, 32, 3)``,
        RGB), ``train_labels`` and ``test_labels`` (``int64``, ``(N,)``) and
        ``class_names`` (list of str). For CIFAR-100 the labels and names are the fine
        ones, and ``train_coarse_labels``, ``test_coarse_labels`` and
        ``coarse_class_names`` are added. Training files are concatenated in the order of
        ``fmt.train_members`` (``data_batch_1`` ... ``data_batch_5``), whatever their
        order in the archive.

    Raises:
        ArchiveFormatError: The archive is damaged or incomplete, a data file is malformed
            (see :func:`parse_records`), a names file lists the wrong number of classes,
            or a split's record count differs from `expected_counts`.
        UnsafeArchiveError: A member path is unsafe (see :func:`~convbench.data.archives.read_tar_members`).
    """
    archive = Path(archive)
    if expected_counts is not None:
        unknown = set(expected_counts) - set(SPLITS)
        if unknown:
            raise ValueError(f"expected_counts keys must be 'train' and/or 'test'. Received: {dict(expected_counts)}")
    splits = {split: _SplitAssembler(fmt, split) for split in SPLITS}
    data_members = {fmt.member(f): splits[split] for split in SPLITS for f in fmt.split_members(split)}
    names_members = {fmt.member(field.names_member): field for field in fmt.label_fields}
    names_text: dict[str, bytes] = {}
    decoding: list[Future[None]] = []
    # One decoding thread: members are decoded in arrival order while the main thread
    # decompresses the next one (zlib and NumPy copies both release the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cifar-decode") as pool:
        try:
            for member, data in iter_tar_members(archive, [*data_members, *names_members]):
                if member in names_members:
                    names_text[member] = data
                else:
                    source = describe_member(archive, member)
                    decoding.append(pool.submit(data_members[member].add, member, data, source))
        except BaseException:
            for future in decoding:
                future.cancel()
            raise
        for future in decoding:
            future.result()

    result: dict[str, Any] = {}
    for split, assembler in splits.items():
        images, labels = assembler.result()
        _check_count(archive, fmt, split, images.shape[0], expected_counts)
        result[f"{split}_images"] = images
        for field in fmt.label_fields:
            result[_labels_key(fmt, split, field)] = labels[field.name]
    for member, field in names_members.items():
        source = describe_member(archive, member)
        result[_names_key(fmt, field)] = parse_class_names(names_text[member], field, source=source)
    logger.info(
        "Read %s from %s: %d train and %d test images",
        fmt.name,
        archive,
        result["train_images"].shape[0],
        result["test_images"].shape[0],
    )
    return result


class _SplitAssembler:
    """Decodes the files of one split into a single output, whatever order they arrive in.

    The first file to arrive sets the expected records per file, and the output is
    allocated for that many records per file (CIFAR's files are equal-sized), so each
    file is decoded straight into its slice. A file of another size is decoded on its
    own and the split is concatenated at the end instead. Not thread-safe: call
    :meth:`add` from one thread at a time.
    """

    def __init__(self, fmt: CifarFormat, split: str):
        self.fmt = fmt
        self.members = tuple(fmt.member(f) for f in fmt.split_members(split))
        self.per_file: int | None = None
        self.images: np.ndarray | None = None
        self.labels: dict[str, np.ndarray] = {}
        self.separate: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def add(self, member: str, data: bytes, source: str) -> None:
        """Check and decode one file of the split."""
        records = _as_records(data, self.fmt, source)
        count = records.shape[0]
        if self.per_file is None:
            self.per_file = count
            self.images, self.labels = _allocate(self.fmt, count * len(self.members))
        if count == self.per_file:
            start = self.members.index(member) * count
            end = start + count
            assert self.images is not None
            _decode_into(
                records,
                self.fmt,
                source,
                self.images[start:end],
                {name: values[start:end] for name, values in self.labels.items()},
            )
        else:
            images, labels = _allocate(self.fmt, count)
            _decode_into(records, self.fmt, source, images, labels)
            self.separate[member] = (images, labels)

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return the split's images and labels, files in order."""
        if self.images is not None and not self.separate:
            return self.images, self.labels
        if self.images is None:  # unreachable after a complete read: every split has files
            return _allocate(self.fmt, 0)
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        for slot, member in enumerate(self.members):
            if member in self.separate:
                parts.append(self.separate[member])
            else:
                assert self.per_file is not None
                cut = slice(slot * self.per_file, (slot + 1) * self.per_file)
                parts.append((self.images[cut], {name: values[cut] for name, values in self.labels.items()}))
        images = np.concatenate([images for images, _ in parts])
        labels = {field.name: np.concatenate([lab[field.name] for _, lab in parts]) for field in self.fmt.label_fields}
        return images, labels


def parse_class_names(text: bytes, field: LabelField, *, source: str) -> list[str]:
    """Return the class names listed one a line in `text` (stripped, blank lines skipped).

    Args:
        text: Contents of a names file such as ``batches.meta.txt``.
        field: The label field the names belong to.
        source: Where the text comes from, used in error messages.

    Returns:
        The class names, in label order.

    Raises:
        ArchiveFormatError: The text is not UTF-8, or the number of names differs from
            ``field.num_classes``.
    """
    try:
        lines = text.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ArchiveFormatError(f"expected UTF-8 text (class names, one a line), found {exc}", archive=source) from exc
    names = [line.strip() for line in lines if line.strip()]
    if len(names) != field.num_classes:
        raise ArchiveFormatError(
            f"expected {field.num_classes} class names for the {field.name!r} label, one a line; "
            f"found {len(names)}: {names}",
            archive=source,
        )
    return names


def _as_records(buffer: bytes, fmt: CifarFormat, source: str) -> np.ndarray:
    """View `buffer` as a ``(N, record_bytes)`` uint8 array, checking its size."""
    size = len(memoryview(buffer).cast("B"))
    whole, rest = divmod(size, fmt.record_bytes)
    if rest:
        raise ArchiveFormatError(
            f"expected a whole number of {fmt.record_bytes:,}-byte {fmt.name} records, found {size:,} bytes "
            f"({whole:,} records and {rest:,} bytes): record {whole:,} (0-based, from byte "
            f"{whole * fmt.record_bytes:,}) is incomplete",
            archive=source,
        )
    return np.frombuffer(buffer, dtype=np.uint8, count=size).reshape(whole, fmt.record_bytes)


def _allocate(fmt: CifarFormat, count: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return uninitialised image and label arrays for `count` records."""
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), dtype=np.uint8)
    return images, {field.name: np.empty(count, dtype=LABEL_DTYPE) for field in fmt.label_fields}


def _decode_into(
    records: np.ndarray, fmt: CifarFormat, source: str, images: np.ndarray, labels: dict[str, np.ndarray]
) -> None:
    """Check the labels of `records`, then write them into `labels` and the pixels into `images` (HWC)."""
    for column, field in enumerate(fmt.label_fields):
        values = records[:, column]
        if problem := out_of_range(values, field.num_classes, "record"):
            first, found = problem
            raise ArchiveFormatError(f"record {first:,} (0-based): {field.name!r} byte {found}", archive=source)
        labels[field.name][...] = values
    # Planes -> interleaved pixels, one colour at a time: each step reads a contiguous
    # 1,024-byte plane and writes every third byte, about 2.5x faster than one
    # transpose((0, 2, 3, 1)) copy.
    planes = records[:, fmt.label_bytes :].reshape(-1, CHANNELS, IMAGE_SIZE * IMAGE_SIZE)
    interleaved = images.reshape(-1, IMAGE_SIZE * IMAGE_SIZE, CHANNELS)
    for channel in range(CHANNELS):
        interleaved[:, :, channel] = planes[:, channel, :]


def _check_count(
    archive: Path, fmt: CifarFormat, split: str, found: int, expected_counts: Mapping[str, int] | None
) -> None:
    """Raise if `split` has another record count than `expected_counts` says."""
    if expected_counts is None or split not in expected_counts:
        return
    expected = int(expected_counts[split])
    if found != expected:
        raise ArchiveFormatError(
            f"expected {expected:,} {split} records, found {found:,} (in {', '.join(fmt.split_members(split))})",
            archive=archive,
        )


def _labels_key(fmt: CifarFormat, split: str, field: LabelField) -> str:
    """Return the result key of a label array (``train_labels``, ``train_coarse_labels``)."""
    return f"{split}_labels" if field.name == fmt.primary_label else f"{split}_{field.name}_labels"


def _names_key(fmt: CifarFormat, field: LabelField) -> str:
    """Return the result key of a class-name list (``class_names``, ``coarse_class_names``)."""
    return "class_names" if field.name == fmt.primary_label else f"{field.name}_class_names"
