"""Parse FERPlus' crowd votes for FER2013 (``fer2013new.csv``) and turn them into training labels.

``fer2013new.csv`` comes from microsoft/FERPlus (MIT licence): for each ``fer2013.csv`` row, in
the same order, how many of 10 taggers chose each of 8 emotions, ``unknown`` or ``NF`` (not a
face). :func:`check_same_rows` checks that the two files list the same images.

The label schemes (:data:`LABEL_MODES`) follow the reference preparation in microsoft/FERPlus
``src/ferplus.py`` (``FERPlusReader._process_data``, ``_process_target`` and ``load_folders``),
``src/train.py`` (validation and test read with ``"majority"``) and
``src/generate_training_data.py`` (rows without an image name skipped), read at commits 06447e0
and 501245c; each rule's constant below says where it comes from. Every row that a scheme drops
is counted, per split and reason (:data:`DROP_REASONS`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from convbench.data.fer2013 import (
    LABEL_DTYPE,
    USAGE_TO_SPLIT,
    Fer2013Table,
    FerFormatError,
    excerpt,
    usage_codes,
)
from convbench.data.ferplus_labels import EVALUATION_MODE, LABEL_MODES

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

_MAX_LISTED = 5
"""Rows named in an error message that concerns many rows."""


@dataclass(frozen=True)
class FerPlusVotes:
    """The rows of ``fer2013new.csv``, in file order.

    Attributes:
        usage: ``int8``, shape ``(N,)``: index of each row's split in
            :data:`convbench.data.fer2013.SPLITS`.
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
    names = table["Image name"].fillna("").astype(str).str.strip().tolist()
    return FerPlusVotes(
        usage=usage_codes(table["Usage"].astype(str).tolist(), source),
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
    usage: list[str] = []
    names: list[str] = []
    vote_text: list[list[str]] = []
    for row_number, raw in enumerate(reader, start=1):
        fields = [field.strip() for field in raw]
        if len(fields) != len(FERPLUS_COLUMNS):
            raise FerFormatError(
                f"expected {len(FERPLUS_COLUMNS)} comma-separated fields ({','.join(FERPLUS_COLUMNS)}), "
                f"found {len(fields)}: {excerpt(','.join(raw))}",
                source=source,
                row=row_number,
            )
        usage.append(fields[0])
        names.append(fields[1])
        vote_text.append(fields[2:])
    if not usage:
        raise FerFormatError("expected data rows after the header, found none", source=source)
    return FerPlusVotes(
        usage=usage_codes(usage, source),
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
        :func:`label_split`).

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
