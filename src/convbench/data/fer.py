"""Parse FER2013 (``fer2013.csv``: 48x48 grey faces) and its FERPlus crowd labels (``fer2013new.csv``).

Two sources, joined row by row:

* ``fer2013.csv`` from the Kaggle challenge "Challenges in Representation Learning: Facial
  Expression Recognition". Kaggle needs a login, so the user places the file (or Kaggle's
  ``fer2013.tar.gz``) in the raw-data folder; :func:`locate_fer2013` finds it or says where to get
  it. Columns ``emotion,pixels,Usage``; ``pixels`` is 2,304 space-separated integers 0-255.
  :func:`parse_fer2013_csv` turns the whole file into ``uint8`` images of shape ``(N, 48, 48, 1)``
  without a Python loop over pixels.
* ``fer2013new.csv`` from microsoft/FERPlus (MIT licence): for each FER2013 row, in the same
  order, how many of 10 taggers chose each of 8 emotions, ``unknown`` or ``NF`` (not a face).

The FERPlus label schemes (:data:`LABEL_MODES`) follow the reference preparation in
microsoft/FERPlus ``src/ferplus.py`` (``FERPlusReader._process_data``, ``_process_target`` and
``load_folders``), ``src/train.py`` (validation and test read with ``"majority"``) and
``src/generate_training_data.py`` (rows without an image name skipped), read at commits 06447e0
and 501245c; each rule's constant below says where it comes from. Every row that a scheme drops
is counted, per split and reason (:data:`DROP_REASONS`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from convbench.data.archives import ArchiveFormatError, read_tar_members
from convbench.data.images import resize_image

logger = logging.getLogger(__name__)

# --- FER2013 file facts ---------------------------------------------------------------------

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

# --- FERPlus file facts ---------------------------------------------------------------------

FERPLUS_FILENAME = "fer2013new.csv"
"""Name of the FERPlus label file."""

FERPLUS_CLASS_NAMES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
"""The 8 FERPlus emotions, in the file's (and the reference's) column order."""

FERPLUS_VOTE_COLUMNS = (*FERPLUS_CLASS_NAMES, "unknown", "NF")
"""The vote columns: the 8 emotions, then ``unknown`` and ``NF`` (not a face)."""

FERPLUS_COLUMNS = ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS)
"""Header of ``fer2013new.csv``, in order."""

UNKNOWN = FERPLUS_VOTE_COLUMNS.index("unknown")
"""Column of ``unknown`` among the vote columns (8)."""

NOT_FACE = FERPLUS_VOTE_COLUMNS.index("NF")
"""Column of ``NF`` among the vote columns (9)."""

MAX_VOTES = 10
"""Taggers per image: a vote count is 0-10."""

# --- FERPlus label rules (microsoft/FERPlus src/ferplus.py) -----------------------------------

MIN_VOTES = 2
"""Smallest vote count kept. ``_process_data`` zeroes every count ``< 1 + epsilon``: a single vote is noise."""

MAJORITY_SHARE = 0.5
"""``majority``: the top class needs more than this share of the (kept) votes, else the image is unknown."""

COVERED_SHARE = 0.75
"""``probability``/``crossentropy``: classes are taken, most votes first, until they cover this share."""

MAX_TAKEN_CLASSES = 3
"""``probability``/``crossentropy``: at most this many classes (a tie at the last level can exceed it: dropped)."""

MIN_COVERED_SHARE = 0.5
"""``probability``/``crossentropy``/``multi_target``: taken classes covering no more than this share -> unknown."""

MULTI_TARGET_SHARE = 0.3
"""``multi_target``: every class with at least this share of the votes is a target."""

MULTI_TARGET_EPSILON = 0.001
"""``multi_target``: ``_process_target`` returns ``(1 - eps) * mask + eps`` to keep the loss well-conditioned."""

LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target", "seed_distribution")
"""Training label schemes.

* ``majority``: one-hot of the class with more than half of the kept votes.
* ``probability``: the distribution over the (at most 3) top classes covering 75% of the votes; the
  reference draws a one-hot target from it for every minibatch (the training input pipeline does).
* ``crossentropy``: the same distribution, used as the soft target of a cross-entropy loss.
* ``multi_target``: every class with at least 30% of the votes is a target: ``(1 - 0.001) * mask + 0.001``.
* ``seed_distribution``: the course notebook's rule: the 8 emotion counts (no vote removed) divided
  by their sum; rows whose 8 emotion counts are all zero are dropped.
"""

REFERENCE_MODES = LABEL_MODES[:4]
"""The modes of the FERPlus reference preparation (single votes removed, unknown/NF winners dropped)."""

EVALUATION_MODE = "majority"
"""Validation and test always use this scheme (the reference reads them with ``"majority"``)."""

DROP_REASONS = ("no_image_name", "no_votes", "unknown_wins", "not_face_wins", "ambiguous")
"""Why a row is dropped; each row counts under the first reason that applies.

* ``no_image_name``: ``Image name`` is empty: FERPlus dropped the image (the reference never reads it).
* ``no_votes``: reference modes: no class has 2 or more votes; ``seed_distribution``: the 8
  emotion counts are all zero.
* ``unknown_wins`` / ``not_face_wins``: ``unknown`` / ``NF`` is the winning class (``majority``: it
  has the majority; ``probability``/``crossentropy``: it is the first class taken; ``multi_target``:
  it has the most votes among the targets).
* ``ambiguous``: the reference forces the image to ``unknown``: ``majority``: no class has more than
  half of the votes; ``probability``/``crossentropy``: the classes taken cover half of the votes or
  less, or more than 3 classes tie; ``multi_target``: the targets cover half of the votes or less.
"""

_CHUNK_ROWS = 32
"""Rows of pixel text decoded per step: small enough for the temporaries to stay in cache and be
reused by the allocator (128 rows took 2.5x as long on the benchmark machine)."""

_MAX_LISTED = 5
"""Rows named in an error message that concerns many rows."""


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


# --- locating and reading fer2013.csv ----------------------------------------------------------


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


def read_fer2013_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """Return the bytes of ``fer2013.csv``, read from the file itself or from Kaggle's archive.

    Args:
        path: ``fer2013.csv``, or a tar archive (``.tar.gz``, ``.tgz``, ``.tar``) holding
            ``fer2013/fer2013.csv``, which is read without extracting anything.

    Returns:
        ``(data, source)``: the CSV bytes and a description of where they come from, for messages.

    Raises:
        FileNotFoundError: `path` does not exist.
        ArchiveFormatError: The archive is damaged or lacks the member.
        UnsafeArchiveError: The archive holds an unsafe member path or a link.
    """
    path = Path(path)
    if _is_tar_name(path.name):
        data = read_tar_members(path, [FER2013_ARCHIVE_MEMBER])[FER2013_ARCHIVE_MEMBER]
        return data, f"{path}, member {FER2013_ARCHIVE_MEMBER!r}"
    return path.read_bytes(), str(path)


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


def load_fer2013(path: str | os.PathLike[str], *, workers: int | None = None) -> Fer2013Table:
    """Read and parse ``fer2013.csv`` or Kaggle's ``fer2013.tar.gz`` (see :func:`read_fer2013_bytes`)."""
    data, source = read_fer2013_bytes(path)
    return parse_fer2013_csv(data, source=source, workers=workers)


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
    text = memoryview(data)
    body_start, columns = _parse_header(data, source)
    fields = _field_bounds(data, body_start, len(columns), source)
    if fields.shape[0] == 0:
        raise FerFormatError("expected data rows after the header, found none", source=source)
    fields = _strip_quotes(data, fields)
    emotions = _parse_emotions(data, fields[:, columns.index("emotion")], source)
    usage = _parse_usage(data, fields[:, columns.index("Usage")], source)
    images = _parse_pixels(text, fields[:, columns.index("pixels")], source, workers)
    return Fer2013Table(images=images, emotions=emotions, usage=usage, source=source)


def read_fer2013(path: str | os.PathLike[str], expected_counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Read FER2013 with its original 7 labels, split by ``Usage``.

    Args:
        path: ``fer2013.csv`` or ``fer2013.tar.gz`` (see :func:`locate_fer2013`).
        expected_counts: Rows per split, e.g. ``{"train": 28709, "val": 3589, "test": 3589}``;
            None skips the check.

    Returns:
        A dict with ``{split}_images`` (``uint8``, ``(N, 48, 48, 1)``), ``{split}_labels``
        (``int64``, 0-6), ``{split}_indices`` (``int64``, 0-based data rows of the file) for
        ``split`` in train, val, test, and ``class_names`` (:data:`FER2013_CLASS_NAMES`).

    Raises:
        FerFormatError: The file is malformed (see :func:`parse_fer2013_csv`) or a split's row
            count differs from `expected_counts`.
    """
    table = load_fer2013(path)
    check_counts(table, expected_counts)
    result: dict[str, Any] = {}
    for split in SPLITS:
        rows = table.split_rows(split)
        result[f"{split}_images"] = table.images[rows]
        result[f"{split}_labels"] = table.emotions[rows]
        result[f"{split}_indices"] = rows
    result["class_names"] = list(FER2013_CLASS_NAMES)
    logger.info("Read FER2013 from %s: %s rows", table.source, table.split_counts())
    return result


# --- fer2013new.csv (FERPlus) ------------------------------------------------------------------


@dataclass(frozen=True)
class FerPlusVotes:
    """The rows of ``fer2013new.csv``, in file order.

    Attributes:
        usage: ``int8``, shape ``(N,)``: index of each row's split in :data:`SPLITS`.
        image_names: Each row's ``Image name`` (empty where FERPlus dropped the image).
        votes: ``int64``, shape ``(N, 10)``: counts in :data:`FERPLUS_VOTE_COLUMNS` order.
        source: Where the rows were read from, for messages.
    """

    usage: np.ndarray
    image_names: list[str]
    votes: np.ndarray
    source: str

    @property
    def has_image(self) -> np.ndarray:
        """Boolean mask of the rows with an image name."""
        return np.array([bool(name) for name in self.image_names], dtype=bool)


ROW_COLUMN = "row"
"""Annotation-table column: the 0-based data row of the image in both files."""


def annotation_table(votes: FerPlusVotes, rows: np.ndarray) -> pd.DataFrame:
    """Return `rows` of ``fer2013new.csv`` as a table: ``row``, then the file's own columns.

    The table is how the ingestion stores the crowd votes beside the images, so the label
    scheme can be applied (and changed) without parsing the files again.
    """
    usage_names = np.array(list(USAGE_TO_SPLIT))
    table = pd.DataFrame(
        {
            ROW_COLUMN: rows.astype(np.int64),
            "Usage": usage_names[votes.usage[rows]],
            "Image name": np.array(votes.image_names, dtype=object)[rows],
        }
    )
    for column, counts in zip(FERPLUS_VOTE_COLUMNS, votes.votes[rows].T):
        table[column] = counts
    return table


def votes_from_table(table: pd.DataFrame, source: str) -> FerPlusVotes:
    """Return the votes of an :func:`annotation_table` (read back from CSV, empty names included).

    Raises:
        FerFormatError: A column is missing or a ``Usage`` is unknown.
    """
    missing = [column for column in (ROW_COLUMN, "Usage", "Image name", *FERPLUS_VOTE_COLUMNS) if column not in table]
    if missing:
        raise FerFormatError(f"expected the columns {', '.join(missing)} in the annotation table", source=source)
    split_codes = {usage: code for code, usage in enumerate(USAGE_TO_SPLIT)}
    usage = table["Usage"].map(split_codes)
    if usage.isna().any():
        row = int(np.flatnonzero(usage.isna().to_numpy())[0])
        raise FerFormatError(_usage_message(str(table["Usage"].iloc[row])), source=source, row=row + 1)
    names = table["Image name"].fillna("").astype(str).str.strip().tolist()
    return FerPlusVotes(
        usage=usage.to_numpy(dtype=np.int8),
        image_names=names,
        votes=table[list(FERPLUS_VOTE_COLUMNS)].to_numpy(dtype=np.int64),
        source=source,
    )


def load_ferplus(path: str | os.PathLike[str]) -> FerPlusVotes:
    """Read and parse ``fer2013new.csv`` (see :func:`parse_ferplus_csv`)."""
    path = Path(path)
    return parse_ferplus_csv(path.read_bytes(), source=str(path))


def parse_ferplus_csv(data: bytes, *, source: str) -> FerPlusVotes:
    """Parse the contents of ``fer2013new.csv``.

    Fields are stripped of surrounding white space, as the reference preparation does.

    Args:
        data: The file's bytes (UTF-8).
        source: Where the bytes come from, used in error messages.

    Returns:
        The rows, in file order.

    Raises:
        FerFormatError: The header differs from :data:`FERPLUS_COLUMNS`; a row has another number
            of fields, an unknown ``Usage`` or a vote count that is not an integer 0-10; or there
            are no rows. The message names the row and what was expected.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FerFormatError(f"expected UTF-8 text, found {exc}", source=source) from exc
    if not text.isascii():
        line = text[: next(i for i, char in enumerate(text) if not char.isascii())].count("\n") + 1
        raise FerFormatError(
            f"line {line:,}: expected ASCII text (names and vote counts), found other characters", source=source
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if tuple(header) != FERPLUS_COLUMNS:
        raise FerFormatError(
            f"line 1 (header): expected the columns {','.join(FERPLUS_COLUMNS)}, found {','.join(header) or 'nothing'}",
            source=source,
        )
    usage: list[int] = []
    names: list[str] = []
    vote_text: list[list[str]] = []
    split_codes = {usage_value: code for code, usage_value in enumerate(USAGE_TO_SPLIT)}
    for row_number, raw in enumerate(reader, start=1):
        fields = [field.strip() for field in raw]
        if len(fields) != len(FERPLUS_COLUMNS):
            raise FerFormatError(
                f"expected {len(FERPLUS_COLUMNS)} comma-separated fields ({','.join(FERPLUS_COLUMNS)}), "
                f"found {len(fields)}: {_excerpt(','.join(raw))}",
                source=source,
                row=row_number,
            )
        code = split_codes.get(fields[0])
        if code is None:
            raise FerFormatError(_usage_message(fields[0]), source=source, row=row_number)
        usage.append(code)
        names.append(fields[1])
        vote_text.append(fields[2:])
    if not usage:
        raise FerFormatError("expected data rows after the header, found none", source=source)
    return FerPlusVotes(
        usage=np.array(usage, dtype=np.int8),
        image_names=names,
        votes=_parse_vote_counts(np.array(vote_text), source),
        source=source,
    )


def _parse_vote_counts(text: np.ndarray, source: str) -> np.ndarray:
    """Return the ``(N, 10)`` vote counts, checking each is an integer 0-10."""
    valid = np.char.isdigit(text) & (np.char.str_len(text) <= len(str(MAX_VOTES)))
    counts = np.where(valid, text, "0").astype(np.int64)
    valid &= counts <= MAX_VOTES
    if not valid.all():
        row, column = (int(index) for index in np.argwhere(~valid)[0])
        raise FerFormatError(
            f"column {FERPLUS_VOTE_COLUMNS[column]!r} is {str(text[row, column])!r}, expected a vote count, "
            f"an integer 0-{MAX_VOTES}; {np.count_nonzero(~valid):,} value(s) are invalid",
            source=source,
            row=row + 1,
        )
    return counts


# --- label schemes -----------------------------------------------------------------------------


class LabelOutcome(NamedTuple):
    """Targets of every row under one label scheme.

    Attributes:
        targets: ``float32``, shape ``(N, 8)``: the training target of each kept row (zeros where dropped).
        labels: ``int64``, shape ``(N,)``: the class each kept row counts as (the reference's
            ``np.argmax`` of its processed votes; the majority class in ``majority``); -1 where dropped.
        reasons: ``str``, shape ``(N,)``: the :data:`DROP_REASONS` entry of each dropped row, ``""`` where kept.
    """

    targets: np.ndarray
    labels: np.ndarray
    reasons: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask of the rows the scheme keeps."""
        return self.reasons == ""

    def drop_counts(self) -> dict[str, int]:
        """Return the number of dropped rows for every :data:`DROP_REASONS` entry."""
        return {reason: int(np.count_nonzero(self.reasons == reason)) for reason in DROP_REASONS}


def ferplus_targets(votes: np.ndarray, label_mode: str) -> LabelOutcome:
    """Apply a FERPlus label scheme to vote counts, all rows at once.

    Args:
        votes: Integer counts, shape ``(N, 10)``, in :data:`FERPLUS_VOTE_COLUMNS` order.
        label_mode: One of :data:`LABEL_MODES`.

    Returns:
        Each row's target, label and drop reason. ``no_image_name`` is not decided here (see
        :func:`join_ferplus`).

    Raises:
        ValueError: `label_mode` is unknown or `votes` has the wrong shape.
    """
    _check_label_mode(label_mode)
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(FERPLUS_VOTE_COLUMNS):
        raise ValueError(f"votes must have shape (N, {len(FERPLUS_VOTE_COLUMNS)}). Received: shape={votes.shape}")
    if label_mode == "seed_distribution":
        return _seed_distribution(votes)
    kept_votes = np.where(votes >= MIN_VOTES, votes, 0).astype(np.int64)
    if label_mode == "majority":
        return _majority(kept_votes)
    if label_mode == "multi_target":
        return _multi_target(kept_votes)
    return _top_classes(kept_votes)


def split_label_mode(split: str, label_mode: str) -> str:
    """Return the scheme that labels `split`: `label_mode` for ``train``, :data:`EVALUATION_MODE` otherwise."""
    return label_mode if split == "train" else EVALUATION_MODE


def label_split(votes: np.ndarray, has_image: np.ndarray, label_mode: str) -> LabelOutcome:
    """Apply a label scheme to the rows of one split, dropping the rows without an image name first.

    Args:
        votes: Integer counts, shape ``(N, 10)``, in :data:`FERPLUS_VOTE_COLUMNS` order.
        has_image: Boolean, shape ``(N,)``: whether the row has an ``Image name``.
        label_mode: One of :data:`LABEL_MODES`.

    Returns:
        Each row's target, label and drop reason (``no_image_name`` first).
    """
    outcome = ferplus_targets(votes, label_mode)
    return _outcome(outcome.targets, outcome.labels, np.where(has_image, outcome.reasons, "no_image_name"))


def _seed_distribution(votes: np.ndarray) -> LabelOutcome:
    """The course notebook's rule: the 8 emotion counts over their sum; all-zero rows dropped."""
    emotions = votes[:, : len(FERPLUS_CLASS_NAMES)].astype(np.float64)
    totals = emotions.sum(axis=1)
    reasons = np.where(totals == 0, "no_votes", "")
    distributions = np.divide(emotions, totals[:, None], out=np.zeros_like(emotions), where=totals[:, None] > 0)
    return _outcome(distributions, np.argmax(distributions, axis=1), reasons)


def _majority(kept_votes: np.ndarray) -> LabelOutcome:
    """``majority``: the class with more than half of the kept votes, one-hot."""
    totals = kept_votes.sum(axis=1)
    winners = np.argmax(kept_votes, axis=1)
    top = kept_votes.max(axis=1)
    reasons = _reasons(
        no_votes=totals == 0,
        winner=winners,
        ambiguous=~(top > MAJORITY_SHARE * totals),
        ambiguous_first=True,
    )
    one_hot = np.zeros((kept_votes.shape[0], len(FERPLUS_CLASS_NAMES)))
    emotion_winners = winners < len(FERPLUS_CLASS_NAMES)
    one_hot[np.flatnonzero(emotion_winners), winners[emotion_winners]] = 1.0
    return _outcome(one_hot, winners, reasons)


def _top_classes(kept_votes: np.ndarray) -> LabelOutcome:
    """``probability``/``crossentropy``: the distribution over the top classes covering 75% of the votes.

    Classes are taken a vote level at a time, most votes first (every class at the level, in column
    order), while the taken classes cover less than 75% of the votes and are fewer than 3. Reaching
    ``unknown`` or ``NF`` ends the selection: if it is the first class taken the image is unknown
    (or not a face), else it is left out. An image whose taken classes cover half of the votes or
    less, or that ends up with more than 3 classes, is unknown.
    """
    rows, emotions = kept_votes.shape[0], len(FERPLUS_CLASS_NAMES)
    totals = kept_votes.sum(axis=1)
    remaining = kept_votes.copy()
    taken = np.zeros((rows, emotions), dtype=bool)
    count = np.zeros(rows, dtype=np.int64)
    covered = np.zeros(rows, dtype=np.int64)
    first_taken_other = np.full(rows, -1)
    reached_other = np.zeros(rows, dtype=bool)
    while True:
        active = (covered < COVERED_SHARE * totals) & (count < MAX_TAKEN_CLASSES) & ~reached_other
        if not active.any():
            break
        level = remaining.max(axis=1)
        at_level = (remaining == level[:, None]) & active[:, None]
        emotions_at_level = at_level[:, :emotions]
        others_at_level = at_level[:, emotions:]
        hits_other = others_at_level.any(axis=1)
        taken_now = emotions_at_level.sum(axis=1)
        first = hits_other & (count + taken_now == 0)
        first_taken_other[first] = emotions + np.argmax(others_at_level[first], axis=1)
        taken |= emotions_at_level
        count += taken_now
        covered += taken_now * level
        reached_other |= hits_other
        remaining[at_level] = 0
    taken_votes = np.where(taken, kept_votes[:, :emotions], 0)
    taken_sum = taken_votes.sum(axis=1)
    reasons = _reasons(
        no_votes=totals == 0,
        winner=np.where(first_taken_other >= 0, first_taken_other, 0),
        ambiguous=(taken_sum <= MIN_COVERED_SHARE * totals) | (count > MAX_TAKEN_CLASSES),
        ambiguous_first=False,
    )
    distributions = _normalise(taken_votes)
    return _outcome(distributions, np.argmax(distributions, axis=1), reasons)


def _multi_target(kept_votes: np.ndarray) -> LabelOutcome:
    """``multi_target``: every class with at least 30% of the votes; the mask with a 0.001 floor."""
    totals = kept_votes.sum(axis=1)
    # Same float expression as the reference (0.3 is not exact in binary).
    targets_mask = kept_votes.astype(np.float64) >= MULTI_TARGET_SHARE * totals.astype(np.float64)[:, None]
    accepted = np.where(targets_mask, kept_votes, 0)
    winners = np.argmax(accepted, axis=1)
    reasons = _reasons(
        no_votes=totals == 0,
        winner=winners,
        ambiguous=accepted.sum(axis=1) <= MIN_COVERED_SHARE * totals,
        ambiguous_first=True,
    )
    mask = (accepted[:, : len(FERPLUS_CLASS_NAMES)] > 0).astype(np.float64)
    targets = (1 - MULTI_TARGET_EPSILON) * mask + MULTI_TARGET_EPSILON * np.ones_like(mask)
    return _outcome(targets, winners, reasons)


def _reasons(*, no_votes: np.ndarray, winner: np.ndarray, ambiguous: np.ndarray, ambiguous_first: bool) -> np.ndarray:
    """Return each row's drop reason ("" where kept), the first that applies.

    Args:
        no_votes: Rows without any kept vote.
        winner: Each row's winning column (``unknown``/``NF`` columns mean that class wins).
        ambiguous: Rows the reference forces to ``unknown`` for lack of a clear label.
        ambiguous_first: Whether ``ambiguous`` takes precedence over an unknown/NF winner.
    """
    ordered = [("unknown_wins", winner == UNKNOWN), ("not_face_wins", winner == NOT_FACE)]
    ordered = [("ambiguous", ambiguous), *ordered] if ambiguous_first else [*ordered, ("ambiguous", ambiguous)]
    reasons = np.full(winner.shape[0], "", dtype=f"<U{max(map(len, DROP_REASONS))}")
    for reason, applies in reversed([("no_votes", no_votes), *ordered]):
        reasons[applies] = reason
    return reasons


def _normalise(counts: np.ndarray) -> np.ndarray:
    """Divide each row by its sum (rows summing to zero stay zero)."""
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _outcome(targets: np.ndarray, labels: np.ndarray, reasons: np.ndarray) -> LabelOutcome:
    """Zero the targets of dropped rows, mark their labels -1, and fix the dtypes."""
    kept = reasons == ""
    targets = np.where(kept[:, None], targets, 0.0).astype(np.float32)
    labels = np.where(kept, labels, -1).astype(LABEL_DTYPE)
    return LabelOutcome(targets=targets, labels=labels, reasons=reasons)


def _check_label_mode(label_mode: str) -> None:
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}. Received: label_mode={label_mode!r}")


# --- joining pixels and votes ----------------------------------------------------------------


@dataclass(frozen=True)
class FerPlusData:
    """FER2013 images with FERPlus labels, per split (``train``, ``val``, ``test``).

    Attributes:
        label_mode: The training label scheme (:data:`LABEL_MODES`); val and test use ``majority``.
        class_names: The 8 FERPlus emotions (:data:`FERPLUS_CLASS_NAMES`).
        images: Split -> ``uint8`` ``(N, 48, 48, 1)``.
        targets: Split -> ``float32`` ``(N, 8)``: the label mode's targets for train (for
            ``probability`` the distributions to draw from), one-hot
            majority targets for val and test.
        labels: Split -> ``int64`` ``(N,)``: the class of each image (for val and test, and for train
            in ``majority``, the majority class).
        indices: Split -> ``int64`` ``(N,)``: the kept rows' 0-based data-row numbers in both files.
        row_counts: Split -> rows of the split in the files, before any drop.
        drop_counts: Split -> reason (every :data:`DROP_REASONS` entry) -> rows dropped.
    """

    label_mode: str
    class_names: list[str]
    images: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    indices: dict[str, np.ndarray]
    row_counts: dict[str, int]
    drop_counts: dict[str, dict[str, int]]

    def count_table(self) -> list[dict[str, Any]]:
        """Return one row per split: ``split``, ``label_mode``, ``rows``, one column per drop reason, ``kept``."""
        return [
            {
                "split": split,
                "label_mode": self.label_mode if split == "train" else EVALUATION_MODE,
                "rows": self.row_counts[split],
                **self.drop_counts[split],
                "kept": int(self.labels[split].shape[0]),
            }
            for split in SPLITS
        ]

    def as_dict(self) -> dict[str, Any]:
        """Return the arrays under flat keys (``train_images``, ``train_targets``, ``train_labels``,
        ``train_indices``, ... for each split), plus ``class_names``, ``label_mode`` and ``drop_counts``."""
        result: dict[str, Any] = {}
        for split in SPLITS:
            result[f"{split}_images"] = self.images[split]
            result[f"{split}_targets"] = self.targets[split]
            result[f"{split}_labels"] = self.labels[split]
            result[f"{split}_indices"] = self.indices[split]
        result["class_names"] = list(self.class_names)
        result["label_mode"] = self.label_mode
        result["drop_counts"] = {split: dict(counts) for split, counts in self.drop_counts.items()}
        return result


def read_ferplus(
    fer2013_path: str | os.PathLike[str],
    ferplus_path: str | os.PathLike[str],
    label_mode: str = "majority",
    expected_counts: Mapping[str, int] | None = None,
) -> FerPlusData:
    """Read FER2013 pixels and FERPlus votes and label the images with `label_mode`.

    Args:
        fer2013_path: ``fer2013.csv`` or ``fer2013.tar.gz`` (see :func:`locate_fer2013`).
        ferplus_path: ``fer2013new.csv``.
        label_mode: Training label scheme, one of :data:`LABEL_MODES`.
        expected_counts: Rows per split in the files (before drops), e.g. ``{"train": 28709,
            "val": 3589, "test": 3589}``; None skips the check.

    Returns:
        The labelled splits (see :class:`FerPlusData`).

    Raises:
        FerFormatError: Either file is malformed, a split's row count differs from
            `expected_counts`, or the files disagree (row count, ``Usage`` of a row).
        ValueError: `label_mode` is unknown.
    """
    _check_label_mode(label_mode)
    votes = load_ferplus(ferplus_path)
    table = load_fer2013(fer2013_path)
    check_counts(table, expected_counts)
    data = join_ferplus(table, votes, label_mode)
    logger.info(
        "Read FERPlus (%s) from %s and %s: %s",
        label_mode,
        table.source,
        votes.source,
        {row["split"]: f"{row['kept']} of {row['rows']} kept" for row in data.count_table()},
    )
    return data


def join_ferplus(table: Fer2013Table, votes: FerPlusVotes, label_mode: str) -> FerPlusData:
    """Label the FER2013 rows with their FERPlus votes, row by row.

    Args:
        table: The parsed ``fer2013.csv``.
        votes: The parsed ``fer2013new.csv``: the same rows, in the same order.
        label_mode: Training label scheme, one of :data:`LABEL_MODES`.

    Returns:
        The labelled splits (see :class:`FerPlusData`).

    Raises:
        FerFormatError: The files have different row counts, or rows whose ``Usage`` differ (the
            message gives the first few such rows and their number).
        ValueError: `label_mode` is unknown.
    """
    _check_label_mode(label_mode)
    check_same_rows(table, votes)
    has_image = votes.has_image
    images, targets, labels, indices, row_counts, drop_counts = {}, {}, {}, {}, {}, {}
    for split in SPLITS:
        rows = table.split_rows(split)
        outcome = label_split(votes.votes[rows], has_image[rows], split_label_mode(split, label_mode))
        kept = rows[outcome.kept]
        images[split] = table.images[kept]
        targets[split] = outcome.targets[outcome.kept]
        labels[split] = outcome.labels[outcome.kept]
        indices[split] = kept
        row_counts[split] = int(rows.shape[0])
        drop_counts[split] = outcome.drop_counts()
    return FerPlusData(
        label_mode=label_mode,
        class_names=list(FERPLUS_CLASS_NAMES),
        images=images,
        targets=targets,
        labels=labels,
        indices=indices,
        row_counts=row_counts,
        drop_counts=drop_counts,
    )


def check_same_rows(table: Fer2013Table, votes: FerPlusVotes) -> None:
    """Raise unless both files have the same rows with the same ``Usage``, in order."""
    pixels_rows, vote_rows = table.usage.shape[0], votes.usage.shape[0]
    if pixels_rows != vote_rows:
        raise FerFormatError(
            f"expected one FERPlus row per FER2013 row, in the same order; {table.source} has "
            f"{pixels_rows:,} data rows and this file {vote_rows:,}",
            source=votes.source,
        )
    differ = np.flatnonzero(table.usage != votes.usage)
    if differ.size:
        usage_names = list(USAGE_TO_SPLIT)
        listed = ", ".join(
            f"{row + 1:,} ({usage_names[table.usage[row]]} vs {usage_names[votes.usage[row]]})"
            for row in differ[:_MAX_LISTED]
        )
        raise FerFormatError(
            f"expected the same Usage as {table.source} in every row (the files must list the same images "
            f"in the same order); {differ.size:,} data row(s) differ, first: {listed}",
            source=votes.source,
        )


def check_counts(table: Fer2013Table, expected_counts: Mapping[str, int] | None) -> None:
    """Raise if a split has another row count than `expected_counts` says."""
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


# --- image transforms --------------------------------------------------------------------------


def resize_images(images: np.ndarray, size: int | tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """Resize a batch of images with OpenCV.

    Args:
        images: ``uint8``, shape ``(N, H, W, C)``.
        size: Target ``(height, width)``, or one number for a square.
        interpolation: An OpenCV flag; None uses ``cv2.INTER_AREA`` to shrink and
            ``cv2.INTER_LINEAR`` to enlarge.

    Returns:
        ``uint8``, shape ``(N, height, width, C)``.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C). Received: shape={images.shape}")
    height, width = (size, size) if isinstance(size, int) else size
    if (height, width) == images.shape[1:3]:
        return images.copy()
    out = np.empty((images.shape[0], height, width, images.shape[3]), dtype=images.dtype)
    for index, image in enumerate(images):
        out[index] = resize_image(image, (height, width), interpolation)
    return out


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Repeat a grey channel three times: ``(N, H, W, 1)`` -> ``(N, H, W, 3)``; RGB input is returned as is."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (N, H, W, 1) or (N, H, W, 3). Received: shape={images.shape}")
    return images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)


# --- fer2013.csv parsing internals ---------------------------------------------------------------


def _is_tar_name(name: str) -> bool:
    return name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz"))


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
            f"line 1 (header): expected the columns {','.join(FER2013_COLUMNS)}; {problem}; found: {_excerpt(header)}",
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
        f"{_excerpt(data[start:end].decode('utf-8', errors='replace'))}",
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
            f"emotion is {_excerpt(value)!r}, expected one of 0-{len(FER2013_CLASS_NAMES) - 1} "
            f"({', '.join(FER2013_CLASS_NAMES)}); {bad.size:,} row(s) are out of range",
            source=source,
            row=row + 1,
        )
    return codes.astype(LABEL_DTYPE)


def _parse_usage(data: bytes, bounds: np.ndarray, source: str) -> np.ndarray:
    """Return each row's split index, checking every ``Usage`` is known."""
    codes = {usage.encode(): code for code, usage in enumerate(USAGE_TO_SPLIT)}
    usage = np.array([codes.get(data[start:end], -1) for start, end in bounds.tolist()], dtype=np.int8)
    bad = np.flatnonzero(usage < 0)
    if bad.size:
        row = int(bad[0])
        value = data[bounds[row, 0] : bounds[row, 1]].decode("utf-8", errors="replace")
        raise FerFormatError(
            f"{_usage_message(value)}; {bad.size:,} row(s) have an unknown Usage", source=source, row=row + 1
        )
    return usage


def _usage_message(value: str) -> str:
    return f"Usage is {_excerpt(value)!r}, expected one of {', '.join(USAGE_TO_SPLIT)}"


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
                raise FerFormatError(f"pixel {position:,} is {_excerpt(shown, 40)}, {expected}", source=source, row=row)
        if len(values) != PIXELS_PER_IMAGE:
            raise FerFormatError(f"pixels holds {len(values):,} values, {expected}", source=source, row=row)
    raise AssertionError(f"{source}: pixel check failed but no bad row found in rows {first_row + 1}..")


_EMPTY_VALUE = "empty (two spaces in a row, or a space at an end)"
"""How an empty pixel value is shown in messages."""


def _excerpt(text: str, limit: int = 60) -> str:
    """Return `text`, shortened with an ellipsis when longer than `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
