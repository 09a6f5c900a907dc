"""Wraps a backbone so the model takes raw uint8 images and normalises them itself."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers


def with_normalization(
    backbone: keras.Model,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    name: str | None = None,
) -> keras.Model:
    """A model: uint8 image -> per-channel z-score (training-split statistics) -> `backbone`."""
    input_shape = tuple(backbone.input_shape[1:])
    if len(mean) != input_shape[-1] or len(std) != input_shape[-1]:
        raise ValueError(
            f"Normalisation statistics must have one value per channel ({input_shape[-1]}). "
            f"Received: mean={list(mean)}, std={list(std)}"
        )
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    x = layers.Normalization(
        mean=np.asarray(mean, dtype="float32"),
        variance=np.square(np.asarray(std, dtype="float32")),
        name="zscore",
    )(layers.Identity(dtype="float32", name="to_float")(inputs))
    outputs = backbone(x)
    return keras.Model(inputs, outputs, name=name or backbone.name)
