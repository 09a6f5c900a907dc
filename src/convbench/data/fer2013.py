"""Locate and parse FER2013's ``fer2013.csv``: 35,887 grey 48x48 faces with their original 7 emotions.

The file comes from the Kaggle challenge "Challenges in Representation Learning: Facial Expression
Recognition". Kaggle needs a login, so the user places the file (or Kaggle's ``fer2013.tar.gz``) in
the raw-data folder; :func:`locate_fer2013` finds it or says where to get it. Columns
``emotion,pixels,Usage``; ``pixels`` is 2,304 space-separated integers 0-255.
:func:`parse_fer2013_csv` turns the whole file into ``uint8`` images of shape ``(N, 48, 48, 1)``
without a Python loop over pixels (3-5x faster than pandas with NumPy's text parsing, see
``benchmarks/README.md``), and names the file, row and expectation of any malformed field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convbench.data.archives import ArchiveFormatError, describe_member, read_tar_members

FER2013_FILENAME = "fer2013.csv"
"""Name of the FER2013 CSV file."""

FER2013_ARCHIVE_FILENAME = "fer2013.tar.gz"
"""Name of Kaggle's archive that holds the CSV."""

FER2013_ARCHIVE_MEMBER = "fer2013/fer2013.csv"
"""Path of the CSV inside :data:`FER2013_ARCHIVE_FILENAME`."""

FER2013_PAGE_URL = (
    "https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data"
)
"""Kaggle page the FER2013 data is downloaded from (needs a Kaggle login and accepting the rules)."""

FER2013_COLUMNS = ("emotion", "pixels", "Usage")
"""Columns of ``fer2013.csv`` (the official order; any order is accepted, matched by name)."""

FER2013_CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The original FER2013 labels, in ``emotion`` code order 0-6."""

IMAGE_SIZE = 48
"""Height and width of a FER2013 image, in pixels."""

PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
"""Values in the ``pixels`` field of a row (2,304), row-major."""

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
"""``Usage`` value -> split. The FERPlus paper uses PublicTest for validation and PrivateTest for test."""

SPLITS = tuple(USAGE_TO_SPLIT.values())
"""Split names, in file order."""

LABEL_DTYPE = np.int64
"""Dtype of the label and index arrays returned."""

_CHUNK_ROWS = 32
"""Rows of pixel text decoded per step: small enough for the temporaries to stay in cache and be
reused by the allocator (128 rows took 2.5x as long on the benchmark machine)."""

_EMPTY_VALUE = "empty (two spaces in a row, or a space at an end)"
"""How an empty pixel value is shown in messages."""


class FerFormatError(ArchiveFormatError):
    """``fer2013.csv`` or ``fer2013new.csv`` is not in the expected format.

    The message starts with the file (and archive member) and, when one row is concerned, its
    1-based data row and line number, then says what was expected and what was found.

    Attributes:
        row: 1-based data row (the first row after the header is 1), if one row is concerned.
    """

    def __init__(self, message: str, *, source: str | os.PathLike[str], row: int | None = None):
        self.row = row
        where = f"data row {row:,} (line {row + 1:,}): " if row is not None else ""
        super().__init__(where + message, archive=source)


@dataclass(frozen=True)
class Fer2013Table:
    """The rows of ``fer2013.csv``, in file order.

    Attributes:
        images: ``uint8``, shape ``(N, 48, 48, 1)``, row-major as in the file.
        emotions: ``int64``, shape ``(N,)``: the original labels 0-6 (:data:`FER2013_CLASS_NAMES`).
        usage: ``int8``, shape ``(N,)``: index of each row's split in :data:`SPLITS`.
        source: Where the rows were read from, for messages.
    """

    images: np.ndarray
    emotions: np.ndarray
    usage: np.ndarray
    source: str

    def split_rows(self, split: str) -> np.ndarray:
        """Return the 0-based row indices of `split` (``"train"``, ``"val"`` or ``"test"``), in order."""
        return np.flatnonzero(self.usage == SPLITS.index(split)).astype(LABEL_DTYPE)

    def split_counts(self) -> dict[str, int]:
        """Return the number of rows of each split."""
        counts = np.bincount(self.usage, minlength=len(SPLITS))
        return {split: int(count) for split, count in zip(SPLITS, counts)}


def locate_fer2013(raw_folder: str | os.PathLike[str]) -> Path:
    """Return the path of ``fer2013.csv`` or, failing that, of ``fer2013.tar.gz`` in `raw_folder`.

    Args:
        raw_folder: The raw-data folder (``data/01_raw``).

    Returns:
        ``raw_folder/fer2013.csv`` if it exists, else ``raw_folder/fer2013.tar.gz``.

    Raises:
        FileNotFoundError: Neither file is there; the message says where to download the data
            and the exact paths to put it at.
    """
    folder = Path(raw_folder)
    csv_path, archive_path = folder / FER2013_FILENAME, folder / FER2013_ARCHIVE_FILENAME
    for path in (csv_path, archive_path):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"FER2013 is missing: neither {csv_path} nor {archive_path} exists. It cannot be downloaded "
        f"automatically because Kaggle requires a login: sign in at {FER2013_PAGE_URL}, accept the "
        f"competition rules, download the data, and put either {FER2013_ARCHIVE_FILENAME} (it holds "
        f"{FER2013_ARCHIVE_MEMBER}) at {archive_path.resolve()} or the extracted {FER2013_FILENAME} "
        f"(columns {','.join(FER2013_COLUMNS)}) at {csv_path.resolve()}."
    )


def load_fer2013(path: str | os.PathLike[str], *, workers: int | None = None) -> Fer2013Table:
    """Read and parse ``fer2013.csv``, or Kaggle's archive holding it.

    Args:
        path: ``fer2013.csv``, or a tar archive (``.tar.gz``, ``.tgz``, ``.tar``...) holding
            ``fer2013/fer2013.csv``, which is read without extracting anything.
        workers: Decoding threads (see :func:`parse_fer2013_csv`).

    Returns:
        The rows, in file order; their ``source`` names the file (and archive member).

    Raises:
        FileNotFoundError: `path` does not exist.
        FerFormatError: The CSV is malformed (see :func:`parse_fer2013_csv`).
        ArchiveFormatError: The archive is damaged or lacks the member.
        UnsafeArchiveError: The archive holds an unsafe member path or a link.
    """
    path = Path(path)
    if path.name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        data = read_tar_members(path, [FER2013_ARCHIVE_MEMBER])[FER2013_ARCHIVE_MEMBER]
        return parse_fer2013_csv(data, source=describe_member(path, FER2013_ARCHIVE_MEMBER), workers=workers)
    return parse_fer2013_csv(path.read_bytes(), source=str(path), workers=workers)


def check_counts(table: Fer2013Table, expected_counts: Mapping[str, int] | None) -> None:
    """Raise if a split has another row count than `expected_counts` says.

    Args:
        table: The parsed file.
        expected_counts: Rows per split, e.g. ``{"train": 28709, "val": 3589, "test": 3589}``
            (any subset of the splits); None checks nothing.

    Raises:
        FerFormatError: A split's count differs; every such split is named with its ``Usage`` and
            both counts.
        ValueError: A key of `expected_counts` is not a split name.
    """
    if expected_counts is None:
        return
    unknown = set(expected_counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"expected_counts keys must be among {', '.join(SPLITS)}. Received: {dict(expected_counts)}")
    found = table.split_counts()
    wrong = {split: count for split, count in expected_counts.items() if found[split] != int(count)}
    if wrong:
        usage_of = {split: usage for usage, split in USAGE_TO_SPLIT.items()}
        details = "; ".join(
            f"{split} ({usage_of[split]}): expected {int(count):,}, found {found[split]:,}"
            for split, count in wrong.items()
        )
        raise FerFormatError(f"expected other row counts per split: {details}", source=table.source)


def parse_fer2013_csv(data: bytes, *, source: str, workers: int | None = None) -> Fer2013Table:
    """Parse the contents of ``fer2013.csv``.

    Fields may be unquoted or wrapped in double quotes; lines end in LF or CRLF; a UTF-8 byte
    order mark is ignored. The pixel text is decoded with NumPy in chunks of rows, on `workers`
    threads.

    Args:
        data: The file's bytes.
        source: Where the bytes come from, used in error messages.
        workers: Decoding threads; None uses up to 4, as many as there are CPUs.

    Returns:
        The rows, in file order.

    Raises:
        FerFormatError: A column is missing; a row has another number of fields; an ``emotion`` is
            not 0-6; a ``Usage`` is not Training, PublicTest or PrivateTest; a ``pixels`` field does
            not hold exactly 2,304 integers 0-255 separated by single spaces; or there are no rows.
            The message names the row and what was expected.
    """
    body_start, columns = _parse_header(data, source)
    fields = _field_bounds(data, body_start, len(columns), source)
    if fields.shape[0] == 0:
        raise FerFormatError("expected data rows after the header, found none", source=source)
    fields = _strip_quotes(data, fields)
    emotions = _parse_emotions(data, fields[:, columns.index("emotion")], source)
    usage_bounds = fields[:, columns.index("Usage")].tolist()
    usage = usage_codes([data[start:end].decode("utf-8", errors="replace") for start, end in usage_bounds], source)
    images = _parse_pixels(memoryview(data), fields[:, columns.index("pixels")], source, workers)
    return Fer2013Table(images=images, emotions=emotions, usage=usage, source=source)


def usage_codes(values: Sequence[str], source: str) -> np.ndarray:
    """Return each row's index in :data:`SPLITS` for its ``Usage`` value (``int8``).

    Raises:
        FerFormatError: A value is not Training, PublicTest or PrivateTest; the first such row is
            named, with the number of such rows.
    """
    codes = {usage: code for code, usage in enumerate(USAGE_TO_SPLIT)}
    usage = np.array([codes.get(value, -1) for value in values], dtype=np.int8)
    bad = np.flatnonzero(usage < 0)
    if bad.size:
        row = int(bad[0])
        raise FerFormatError(
            f"Usage is {excerpt(values[row])!r}, expected one of {', '.join(USAGE_TO_SPLIT)}; "
            f"{bad.size:,} row(s) have an unknown Usage",
            source=source,
            row=row + 1,
        )
    return usage


def excerpt(text: str, limit: int = 60) -> str:
    """Return `text`, shortened with an ellipsis when longer than `limit` characters (for messages)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(data: bytes, source: str) -> tuple[int, list[str]]:
    """Return where the data rows start and the column names, checking every column is there."""
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    header = data[start:end].rstrip(b"\r").decode("utf-8", errors="replace")
    columns = [name.strip().strip('"').strip() for name in header.split(",")]
    missing = [name for name in FER2013_COLUMNS if name not in columns]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if missing or duplicated:
        problem = f"missing: {', '.join(missing)}" if missing else f"repeated: {', '.join(duplicated)}"
        raise FerFormatError(
            f"line 1 (header): expected the columns {','.join(FER2013_COLUMNS)}; {problem}; found: {excerpt(header)}",
            source=source,
        )
    return end + 1, columns


def _field_bounds(data: bytes, start: int, n_columns: int, source: str) -> np.ndarray:
    """Return ``(rows, n_columns, 2)`` start/end offsets of every field (line ends, ``\\r`` excluded).

    One ``bytes.find`` per comma and line end (C speed); the pixels are not looked at. Line ends
    at the end of the file are ignored.
    """
    find = data.find
    size = len(data)
    while size > start and data[size - 1] in b"\r\n":
        size -= 1
    bounds: list[int] = []
    position, row = start, 0
    while position < size:
        row += 1
        line_end = find(b"\n", position, size)
        line_end = size if line_end < 0 else line_end
        content_end = line_end - 1 if line_end > position and data[line_end - 1] == ord("\r") else line_end
        field_start = position
        for _ in range(n_columns - 1):
            comma = find(b",", field_start, content_end)
            if comma < 0:
                _raise_field_count(data, position, content_end, n_columns, row, line_end == size, source)
            bounds += (field_start, comma)
            field_start = comma + 1
        if find(b",", field_start, content_end) >= 0:
            _raise_field_count(data, position, content_end, n_columns, row, line_end == size, source)
        bounds += (field_start, content_end)
        position = line_end + 1
    return np.array(bounds, dtype=np.int64).reshape(-1, n_columns, 2)


def _raise_field_count(data: bytes, start: int, end: int, n_columns: int, row: int, is_last: bool, source: str) -> None:
    """Raise the error for a line with another number of fields than the header."""
    found = data.count(b",", start, end) + 1
    hint = " (the last line: is the file truncated?)" if is_last else ""
    raise FerFormatError(
        f"expected {n_columns} comma-separated fields like the header, found {found}{hint}: "
        f"{excerpt(data[start:end].decode('utf-8', errors='replace'))}",
        source=source,
        row=row,
    )


def _strip_quotes(data: bytes, fields: np.ndarray) -> np.ndarray:
    """Move the bounds of fields wrapped in double quotes inside the quotes."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, ends = fields[..., 0], fields[..., 1]
    long_enough = ends - starts >= 2
    quoted = np.zeros(starts.shape, dtype=bool)
    quoted[long_enough] = (raw[starts[long_enough]] == ord('"')) & (raw[ends[long_enough] - 1] == ord('"'))
    stripped = fields.copy()
    stripped[..., 0] += quoted
    stripped[..., 1] -= quoted
    return stripped


def _parse_emotions(data: bytes, bounds: np.ndarray, source: str) -> np.ndarray:
    """Return the ``emotion`` codes, checking each is one digit 0-6."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts, ends = bounds[:, 0], bounds[:, 1]
    one_char = ends - starts == 1
    codes = np.full(starts.shape, 255, dtype=np.uint8)
    codes[one_char] = raw[starts[one_char]] - np.uint8(ord("0"))
    bad = np.flatnonzero(codes >= len(FER2013_CLASS_NAMES))
    if bad.size:
        row = int(bad[0])
        value = data[starts[row] : ends[row]].decode("utf-8", errors="replace")
        raise FerFormatError(
            f"emotion is {excerpt(value)!r}, expected one of 0-{len(FER2013_CLASS_NAMES) - 1} "
            f"({', '.join(FER2013_CLASS_NAMES)}); {bad.size:,} row(s) are out of range",
            source=source,
            row=row + 1,
        )
    return codes.astype(LABEL_DTYPE)


def _parse_pixels(text: memoryview, bounds: np.ndarray, source: str, workers: int | None) -> np.ndarray:
    """Decode every row's ``pixels`` field into ``uint8`` ``(N, 48, 48, 1)``, chunks of rows on threads."""
    rows = bounds.shape[0]
    images = np.empty((rows, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    flat = images.reshape(rows, PIXELS_PER_IMAGE)
    chunks = [(first, min(first + _CHUNK_ROWS, rows)) for first in range(0, rows, _CHUNK_ROWS)]
    workers = workers or min(4, os.cpu_count() or 1)

    def decode(chunk: tuple[int, int]) -> None:
        first, stop = chunk
        _decode_pixel_rows(text, bounds[first:stop], flat[first:stop], first, source)

    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            decode(chunk)
    else:
        # NumPy and bytes.join release the GIL, so chunks decode in parallel; results come back in
        # order, so the first bad row of the file is the one reported.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fer-pixels") as pool:
            for _ in pool.map(decode, chunks):
                pass
    return images


def _decode_pixel_rows(text: memoryview, bounds: np.ndarray, out: np.ndarray, first_row: int, source: str) -> None:
    """Decode the ``pixels`` fields of consecutive rows into `out` (``(rows, 2304)`` ``uint8``).

    The fields are joined with single spaces into one buffer of digits and spaces. A number ends
    wherever a digit is followed by a non-digit; its value is the digit there plus 10 times the
    digit before plus 100 times the one before that (a space counts as 0, and the hundreds only
    where the tens position is a digit). Any check that fails hands the rows to
    :func:`_raise_pixel_error`, which names the first bad row and value.
    """
    rows = bounds.shape[0]
    buffer = b" ".join([text[start:end] for start, end in bounds.tolist()])
    chars = np.frombuffer(buffer, dtype=np.uint8)
    digits = chars - np.uint8(ord("0"))
    is_digit = digits < 10
    is_space = chars == ord(" ")
    lengths = bounds[:, 1] - bounds[:, 0]
    row_last_char = np.cumsum(lengths + 1) - 2
    well_formed = (
        chars.size > 0
        and bool(is_digit[0])
        and bool(is_digit[-1])
        and bool(np.logical_or(is_digit, is_space).all())
        and not np.logical_and(is_space[1:], is_space[:-1]).any()
        and not (is_digit[3:] & is_digit[2:-1] & is_digit[1:-2] & is_digit[:-3]).any()
    )
    if not well_formed:
        _raise_pixel_error(text, bounds, first_row, source)
    ends = np.empty_like(is_digit)
    ends[:-1] = is_digit[:-1] & is_space[1:]
    ends[-1] = True
    number_ends = np.flatnonzero(ends)
    if number_ends.size != rows * PIXELS_PER_IMAGE or not np.array_equal(
        number_ends[PIXELS_PER_IMAGE - 1 :: PIXELS_PER_IMAGE], row_last_char
    ):
        _raise_pixel_error(text, bounds, first_row, source)
    digits *= is_digit  # spaces count as 0
    values = digits.astype(np.uint16)
    values[1:] += digits[:-1] * np.uint16(10)
    values[2:] += (digits[:-2] * is_digit[1:-1]) * np.uint16(100)
    pixels = values.take(number_ends)
    if pixels.max() > 255:
        _raise_pixel_error(text, bounds, first_row, source)
    out[...] = pixels.reshape(rows, PIXELS_PER_IMAGE)


def _raise_pixel_error(text: memoryview, bounds: np.ndarray, first_row: int, source: str) -> None:
    """Find the first bad ``pixels`` field among the rows and raise an error that describes it."""
    expected = (
        f"expected {PIXELS_PER_IMAGE:,} integers 0-255 separated by single spaces ({IMAGE_SIZE}x{IMAGE_SIZE} pixels)"
    )
    for offset, (start, end) in enumerate(bounds.tolist()):
        row = first_row + offset + 1
        field = text[start:end].tobytes()
        if not field:
            raise FerFormatError(f"pixels is empty, {expected}", source=source, row=row)
        values = field.split(b" ")
        for position, value in enumerate(values, start=1):
            if not (value.isdigit() and len(value) <= 3 and int(value) <= 255):
                shown = repr(value.decode("utf-8", errors="replace")) if value else _EMPTY_VALUE
                raise FerFormatError(f"pixel {position:,} is {excerpt(shown, 40)}, {expected}", source=source, row=row)
        if len(values) != PIXELS_PER_IMAGE:
            raise FerFormatError(f"pixels holds {len(values):,} values, {expected}", source=source, row=row)
    raise AssertionError(f"{source}: pixel check failed but no bad row found in rows {first_row + 1}..")
