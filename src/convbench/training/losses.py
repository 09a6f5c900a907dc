"""Training losses and accuracy, chosen by a recipe's `label_smoothing` and, for crowd labels, `label_mode`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

SAMPLED_LABEL_MODE = "probability"
"""The FERPlus scheme whose training target is a one-hot drawn from the vote distribution every batch."""

MULTI_TARGET_LABEL_MODE = "multi_target"
"""The FERPlus scheme trained with :class:`MultiTargetCrossentropy`."""


@keras.saving.register_keras_serializable(package="convbench")
class MultiTargetCrossentropy(keras.losses.Loss):
    """FERPlus' multi-target loss: `-log(max_k target_k * p_k)`.

    Any class the crowd accepted may be predicted: the loss only asks that one of them gets a
    high probability (microsoft/FERPlus `src/train.py`, `cost_func`, mode `multi_target`).
    """

    def __init__(self, name: str = "multi_target_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.cast(y_pred, "float32"), keras.config.epsilon(), 1.0)
        best = ops.max(ops.cast(y_true, "float32") * y_pred, axis=-1)
        return -ops.log(ops.maximum(best, keras.config.epsilon()))


@keras.saving.register_keras_serializable(package="convbench")
class MultiTargetAccuracy(keras.metrics.MeanMetricWrapper):
    """Share of images whose predicted class is one of their accepted targets (target above 0.5).

    With `multi_target` every accepted class has the same target value, so comparing with the
    target's argmax (categorical accuracy) would call a correct second accepted class wrong. On
    one-hot targets (validation, test) it is ordinary accuracy.
    """

    def __init__(self, name: str = "accuracy", dtype=None) -> None:
        super().__init__(fn=_predicted_class_accepted, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


def _predicted_class_accepted(y_true, y_pred):
    predicted = ops.argmax(y_pred, axis=-1)
    picked = ops.take_along_axis(ops.cast(y_true, "float32"), ops.expand_dims(predicted, -1), axis=-1)[..., 0]
    return ops.cast(picked > 0.5, "float32")


def training_accuracy(recipe: dict[str, Any]) -> keras.metrics.Metric:
    """Accuracy as logged per epoch (`accuracy`, `val_accuracy`).

    Categorical accuracy (the target's most likely class; for `probability`, the class drawn for
    the batch), or, for `multi_target`, any accepted class (:class:`MultiTargetAccuracy`).
    Validation targets are one-hot majority labels, so `val_accuracy` is always against the majority.
    """
    if recipe.get("label_mode") == MULTI_TARGET_LABEL_MODE:
        return MultiTargetAccuracy()
    return keras.metrics.CategoricalAccuracy(name="accuracy")


def training_loss(recipe: dict[str, Any]) -> keras.losses.Loss:
    """Categorical cross-entropy (label-smoothed as the recipe says; soft targets welcome), or the
    multi-target loss for `label_mode: multi_target`."""
    if recipe.get("label_mode") == MULTI_TARGET_LABEL_MODE:
        return MultiTargetCrossentropy()
    return keras.losses.CategoricalCrossentropy(label_smoothing=float(recipe.get("label_smoothing", 0.0)))


def draws_targets(recipe: dict[str, Any]) -> bool:
    """Whether training draws a one-hot target from each image's distribution every batch."""
    return recipe.get("label_mode") == SAMPLED_LABEL_MODE
