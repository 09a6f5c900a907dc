"""Checks every parser makes of its decoded values, with the wording their errors share."""

from __future__ import annotations

import numpy as np


def out_of_range(values: np.ndarray, count: int, unit: str) -> tuple[int, str] | None:
    """None when every one of `values` is in 0..count-1; otherwise the index of the first that is
    not, and the end of the message that reports it: `is 10, expected 0-9 (2 of 20 <unit>s are out of range)`."""
    bad = np.flatnonzero(values >= count)
    if not bad.size:
        return None
    first = int(bad[0])
    return first, (
        f"is {int(values[first])}, expected 0-{count - 1} ({bad.size:,} of {values.size:,} {unit}s are out of range)"
    )
