"""Test-time augmentation: the softmax averaged over flipped and shifted copies of each image."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from convbench.training.recipe import check_block


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`images` [N, H, W, C] moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    if dy == 0 and dx == 0:
        return images
    pad_y, pad_x = abs(dy), abs(dx)
    padded = np.pad(images, ((0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    top, left = pad_y - dy, pad_x - dx
    return padded[:, top : top + height, left : left + width]


def tta_views(images: np.ndarray, tta: dict[str, Any]) -> list[np.ndarray]:
    """The copies of `images` that `tta: {flip: bool, translate: pixels}` averages over, the images first.

    With `flip`, each image and its mirror image; with `translate: t`, each of those also moved by
    (+t, +t) and (-t, -t) pixels (airbench's two shifted crops). `{}` gives the images alone.
    """
    checked = check_block("tta", tta)
    translate = int(checked.translate or 0) if checked else 0
    if translate >= min(images.shape[1:3]):
        raise ValueError(f"tta.translate must be 0 or a shift smaller than the image. Received: {translate}")
    bases = [images, images[:, :, ::-1]] if checked and checked.flip else [images]
    views = list(bases)
    if translate:
        for base in bases:
            views += [shifted(base, translate, translate), shifted(base, -translate, -translate)]
    return views


def tta_weights(tta: dict[str, Any]) -> list[float]:
    """The weight of each of `tta_views(images, tta)` in the average, summing to 1.

    Without translation all views weigh the same. With it, the unshifted views hold half the
    weight and the shifted ones the other half, as airbench weighs them (the unshifted image is
    the one the network is most sure of).
    """
    flips = 2 if tta.get("flip") else 1
    if not int(tta.get("translate", 0) or 0):
        return [1.0 / flips] * flips
    return [0.5 / flips] * flips + [0.5 / (2 * flips)] * (2 * flips)


def enabled(tta: dict[str, Any] | None) -> bool:
    """Whether `tta` asks for any augmented copy."""
    return bool(tta) and bool(tta.get("flip") or tta.get("translate"))


def predict_with_tta(model: keras.Model, images: np.ndarray, tta: dict[str, Any], batch_size: int) -> np.ndarray:
    """The `tta_weights`-weighted mean of `model`'s probabilities over `tta_views(images, tta)`, float32 [N, classes]."""
    total = None
    for view, weight in zip(tta_views(images, tta), tta_weights(tta), strict=True):
        probabilities = model.predict(np.ascontiguousarray(view), batch_size=batch_size, verbose=0).astype(np.float64)
        total = weight * probabilities if total is None else total + weight * probabilities
    return total.astype(np.float32)
