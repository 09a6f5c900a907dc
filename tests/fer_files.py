"""Build FER2013 and FERPlus files in exactly the official formats, for tests.

Import as ``import fer_files`` (``tests/`` is on pytest's ``pythonpath``).

* ``fer2013.csv`` as Kaggle ships it (see ``FORMATS.md``): header ``emotion,pixels,Usage``, one
  row per image, fields unquoted, ``pixels`` 2,304 integers 0-255 joined by single spaces, LF line
  ends, the Training rows first, then PublicTest, then PrivateTest. Options build the variants
  other tools write (quoted fields, CRLF).
* ``fer2013.tar.gz`` as Kaggle ships it: a ``fer2013/`` folder holding ``fer2013.csv``, ``README``
  and ``fer2013.bib``.
* ``fer2013new.csv``: :data:`FERPLUS_SAMPLE` is the real file (MIT licence, see
  ``fixtures/fer2013new.LICENSE.md``); :func:`ferplus_text` writes rows in its format.

:func:`reference_label` is a plain, row-at-a-time restatement of the FERPlus reference rules
(microsoft/FERPlus ``src/ferplus.py``), written independently of the vectorised code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cifar_archives as ca
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FERPLUS_SAMPLE = FIXTURES / "fer2013new.csv"
"""The real ``fer2013new.csv`` (35,887 rows)."""
FERPLUS_SHA256 = "9206e20d62f56475939f516847d61753e4860caeac9718b560129541b776fc2c"

FER_HEADER = "emotion,pixels,Usage"
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
USAGES = ("Training", "PublicTest", "PrivateTest")
REAL_SPLIT_ROWS = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
"""Rows per Usage in the real files."""


class Fer2013Rows:
    """Rows of a synthetic ``fer2013.csv`` and what a parser must return for them.

    Attributes:
        images: ``uint8`` ``(N, 48, 48, 1)``.
        emotions: ``int64`` ``(N,)``, 0-6.
        usages: Usage of each row (``"Training"``...).
    """

    def __init__(self, images: np.ndarray, emotions: np.ndarray, usages: Sequence[str]):
        self.images = images
        self.emotions = emotions
        self.usages = list(usages)

    def split_rows(self, usage: str) -> np.ndarray:
        return np.array([i for i, u in enumerate(self.usages) if u == usage], dtype=np.int64)


def fer2013_rows(counts: dict[str, int] | None = None, seed: int = 0) -> Fer2013Rows:
    """Random rows, Training first, then PublicTest, then PrivateTest (as in the real file).

    The first image holds 0, 9, 10, 99, 100 and 255 in its first pixels (every digit count), and
    every emotion 0-6 occurs when there are 7 rows or more.
    """
    counts = counts or {"Training": 6, "PublicTest": 3, "PrivateTest": 3}
    rng = np.random.default_rng(seed)
    usages = [usage for usage in USAGES for _ in range(counts.get(usage, 0))]
    images = rng.integers(0, 256, size=(len(usages), 48, 48, 1), dtype=np.uint8)
    emotions = (np.arange(len(usages)) % 7).astype(np.int64)
    rng.shuffle(emotions)
    if len(usages):
        images[0, 0, :6, 0] = [0, 9, 10, 99, 100, 255]
    return Fer2013Rows(images, emotions, usages)


def fer2013_text(rows: Fer2013Rows, *, quote: str = "", line_end: str = "\n", header: str = FER_HEADER) -> bytes:
    """Return the rows as ``fer2013.csv`` bytes.

    Args:
        rows: The rows.
        quote: ``""`` for Kaggle's unquoted fields, ``"pixels"`` to quote the pixel field only,
            ``"all"`` to quote every field and column name (as ``csv.QUOTE_ALL`` writers do).
        line_end: ``"\\n"`` (Kaggle) or ``"\\r\\n"``.
        header: The header line.
    """
    lines = [",".join(f'"{name}"' for name in header.split(",")) if quote == "all" else header]
    for image, emotion, usage in zip(rows.images, rows.emotions, rows.usages):
        pixels = " ".join(str(int(value)) for value in image.reshape(-1))
        fields = [str(int(emotion)), pixels, usage]
        if quote == "pixels":
            fields[1] = f'"{pixels}"'
        elif quote == "all":
            fields = [f'"{field}"' for field in fields]
        lines.append(",".join(fields))
    return (line_end.join(lines) + line_end).encode("ascii")


def write_fer2013_csv(path: Path, rows: Fer2013Rows | None = None, **options) -> Fer2013Rows:
    """Write ``fer2013.csv`` (see :func:`fer2013_text`) and return its rows."""
    rows = rows or fer2013_rows()
    Path(path).write_bytes(fer2013_text(rows, **options))
    return rows


def write_fer2013_archive(path: Path, csv_bytes: bytes, *, member: str = "fer2013/fer2013.csv") -> Path:
    """Write a Kaggle-style ``fer2013.tar.gz``: ``fer2013/`` with the CSV, ``README`` and ``fer2013.bib``."""
    entries = [
        ca.folder("fer2013"),
        ca.member("fer2013/README", b"Challenges in Representation Learning: Facial Expression Recognition\n"),
        ca.member(member, csv_bytes),
        ca.member("fer2013/fer2013.bib", b"@misc{fer2013}\n"),
    ]
    return ca.write_tar(path, entries)


def ferplus_text(rows: Sequence[tuple[str, str, Sequence[int]]], *, header: str = FERPLUS_HEADER) -> bytes:
    """Return ``fer2013new.csv`` bytes for ``(usage, image name, 10 vote counts)`` rows."""
    lines = [header] + [",".join([usage, name, *map(str, votes)]) for usage, name, votes in rows]
    return ("\n".join(lines) + "\n").encode("ascii")


def ferplus_sample_lines() -> list[str]:
    """Return the real ``fer2013new.csv``'s lines (header first), without line ends."""
    return FERPLUS_SAMPLE.read_text().splitlines()


def ferplus_slice(usages: Sequence[str], lines: list[str] | None = None) -> bytes:
    """Return a ``fer2013new.csv`` made of real rows, the first unused one of each requested Usage in turn."""
    lines = lines or ferplus_sample_lines()
    pools = {usage: iter([line for line in lines[1:] if line.startswith(usage + ",")]) for usage in set(usages)}
    return ("\n".join([lines[0], *(next(pools[usage]) for usage in usages)]) + "\n").encode("ascii")


def real_votes() -> tuple[list[str], list[str], np.ndarray]:
    """Return the real file's Usage column, image names and ``(N, 10)`` vote counts."""
    lines = ferplus_sample_lines()[1:]
    usage, names, votes = [], [], []
    for line in lines:
        fields = line.split(",")
        usage.append(fields[0])
        names.append(fields[1])
        votes.append([int(value) for value in fields[2:]])
    return usage, names, np.array(votes)


# --- the FERPlus reference rules, one row at a time ------------------------------------------------

EMOTIONS = 8
UNKNOWN, NOT_FACE = 8, 9


def reference_label(votes: Sequence[int], mode: str) -> tuple[str, list[float] | None, int | None]:
    """Apply one FERPlus reference scheme to one row's 10 vote counts.

    Returns ``(reason, target, label)``: reason ``""`` when the row is kept (as
    :data:`convbench.data.ferplus.DROP_REASONS` otherwise), the 8-value training target and the label
    (the arg-max of the processed votes), or ``None`` for both when dropped.
    """
    counts = [float(v) if v >= 2 else 0.0 for v in votes]  # a single vote is noise
    total = sum(counts)
    if total == 0:
        return "no_votes", None, None
    if mode == "majority":
        best = max(range(10), key=lambda i: (counts[i], -i))
        if not counts[best] > total / 2:
            return "ambiguous", None, None
        chosen = {best: counts[best]}
    elif mode in ("probability", "crossentropy"):
        chosen = {}
        covered, stop = 0.0, False
        while covered < 0.75 * total and len(chosen) < 3 and not stop:
            level = max(c for i, c in enumerate(counts) if i not in chosen and c > 0)
            for i in range(10):
                if i in chosen or counts[i] != level:
                    continue
                if i >= EMOTIONS:  # unknown or NF reached: it ends the selection
                    stop = True
                    if not chosen:
                        return ("unknown_wins" if i == UNKNOWN else "not_face_wins"), None, None
                    break
                chosen[i] = level
                covered += level
        if sum(chosen.values()) <= total / 2 or len(chosen) > 3:
            return "ambiguous", None, None
    elif mode == "multi_target":
        chosen = {i: c for i, c in enumerate(counts) if c >= 0.3 * total}
        if sum(chosen.values()) <= total / 2:
            return "ambiguous", None, None
    else:
        raise ValueError(mode)
    label = max(chosen, key=lambda i: (chosen[i], -i))
    if label == UNKNOWN:
        return "unknown_wins", None, None
    if label == NOT_FACE:
        return "not_face_wins", None, None
    emotion_votes = [chosen.get(i, 0.0) for i in range(EMOTIONS)]
    if mode == "multi_target":
        target = [1.0 if v > 0 else 0.001 for v in emotion_votes]
    else:
        target = [v / sum(emotion_votes) for v in emotion_votes]
    return "", target, label
