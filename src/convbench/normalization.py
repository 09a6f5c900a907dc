"""The normalisation statistics' contract: what `channel_statistics` writes and every reader checks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def statistics_checksum(statistics: dict[str, Any]) -> str:
    """A digest of the mean, std and image count as written (the values, to the last bit)."""
    payload = json.dumps([statistics["mean"], statistics["std"], statistics["images"]])
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def check_normalization(statistics: Any, channels: int, where: str) -> None:
    """Raises ValueError, naming `where` (the file) and the fix, unless `statistics` is what
    `channel_statistics` wrote for images of `channels` channels: one positive finite std and one
    mean in [0, 255] per channel, and an unchanged checksum."""
    fix = f"Delete {where} and rerun the preprocessing (`kedro run --pipelines=<dataset>_preprocessing`), which recomputes it."
    try:
        mean = np.asarray(statistics["mean"], dtype=np.float64)
        std = np.asarray(statistics["std"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where} does not hold per-channel `mean` and `std` lists ({error!r}). {fix}") from None
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(
            f"{where} has {mean.size} means and {std.size} stds; the images have {channels} channels. {fix}"
        )
    if not (
        np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all() and ((mean >= 0) & (mean <= 255)).all()
    ):
        raise ValueError(
            f"{where} holds mean {mean.tolist()} and std {std.tolist()}: expected means in [0, 255] and stds > 0. {fix}"
        )
    if "checksum" in statistics and statistics["checksum"] != statistics_checksum(statistics):
        raise ValueError(f"{where} was edited after the preprocessing wrote it (its checksum no longer matches). {fix}")
