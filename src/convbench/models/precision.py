"""Mixed precision as a recipe knob: `mixed_precision: bfloat16 | float16` (absent or null: float32).

Under a mixed policy the layers compute in 16 bits and keep their weights in float32; the softmax
(`layers.predictions`, airbench's head) and the input normalisation stay float32, so
probabilities and losses are never rounded to 16 bits. float16 needs loss scaling against
underflowing gradients (`with_loss_scaling`); bfloat16 has float32's range and does not.
A model takes its policy when it is built, so the builder runs inside `building_with`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

MIXED_PRECISION = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
"""The recipe's `mixed_precision` values and the Keras dtype policy each one builds with."""


def dtype_policy(mixed_precision: str | None) -> str:
    """The Keras dtype policy for a recipe's `mixed_precision` value (None: `float32`).

    Raises:
        ValueError: A value other than those in `MIXED_PRECISION`.
    """
    if mixed_precision is None:
        return "float32"
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            f"mixed_precision must be one of {', '.join(MIXED_PRECISION)} or null. Received: {mixed_precision!r}"
        )
    return MIXED_PRECISION[mixed_precision]


@contextlib.contextmanager
def building_with(mixed_precision: str | None) -> Iterator[str]:
    """Layers created inside take the policy of `mixed_precision`; the global policy is restored after."""
    policy = dtype_policy(mixed_precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def with_loss_scaling(optimizer: keras.optimizers.Optimizer, recipe: dict[str, Any]) -> keras.optimizers.Optimizer:
    """`optimizer` wrapped in dynamic loss scaling when the recipe trains in float16, else itself."""
    if recipe.get("mixed_precision") == "float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
