"""The model a training starts from: an architecture built under its recipe, taking raw images.

Keras alone (no Kedro, MLflow or TensorFlow import), so the GPU kit (benchmarks/gpu) builds exactly
what `kedro run` trains on a machine without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from convbench.models.precision import building_with
from convbench.models.preprocessing import with_normalization
from convbench.models.registry import data_init, get_builder

DATA_INIT_IMAGES = 10_000
"""At most this many training images set an architecture's data-dependent weights (airbench's whitening)."""


def assemble_model(
    architecture: str,
    input_shape: Sequence[int],
    classes: int,
    recipe: dict[str, Any],
    mean: Sequence[float],
    std: Sequence[float],
    init_images: np.ndarray,
    init_rows: np.ndarray | None = None,
) -> keras.Model:
    """`architecture` for `classes` classes with the recipe's `model` hyperparameters, its layers in the
    recipe's `mixed_precision` policy and its initial weights from the recipe's `seed`, behind a z-score
    layer (`mean`, `std`): it takes raw uint8 images.

    An architecture registered with a `data_init` gets its data-dependent weights from the first
    `DATA_INIT_IMAGES` of `init_images` (raw training images; those of `init_rows` where given), z-scored
    as the model will see them; other architectures read no image.
    """
    if recipe.get("seed") is not None:  # the same seed builds the same initial weights in any process
        keras.utils.set_random_seed(int(recipe["seed"]))
    with building_with(recipe.get("mixed_precision")):
        backbone = get_builder(architecture)(tuple(input_shape), classes, **(recipe.get("model") or {}))
        initialise = data_init(architecture)
        if initialise is not None:
            rows = slice(DATA_INIT_IMAGES) if init_rows is None else np.asarray(init_rows)[:DATA_INIT_IMAGES]
            pixels = np.asarray(init_images[rows], dtype=np.float32)
            initialise(backbone, (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32))
        return with_normalization(backbone, mean, std, name=backbone.name)
