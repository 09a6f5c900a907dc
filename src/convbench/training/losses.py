"""Training losses and accuracy, chosen by a recipe's `label_smoothing` and, for crowd labels, `label_mode`.

Two losses are told apart everywhere (epoch logs, curves, tables, MLflow, leaderboard):

- the *data loss* (`loss`, `val_loss`, `test_loss`): cross-entropy of the predictions against the
  targets, alike on every split, with no label smoothing and no weight penalty (`DataLoss`);
- the *objective* Keras minimises (`objective`): the recipe's loss, label-smoothed if it says so,
  plus the L2 penalty of the weights (`l2_penalty`, logged on its own).
"""

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
        return multi_target_crossentropy(y_true, y_pred)


def multi_target_crossentropy(y_true, y_pred):
    """Per image: `-log(max_k target_k * p_k)` (see :class:`MultiTargetCrossentropy`)."""
    y_pred = ops.clip(ops.cast(y_pred, "float32"), keras.config.epsilon(), 1.0)
    best = ops.max(ops.cast(y_true, "float32") * y_pred, axis=-1)
    return -ops.log(ops.maximum(best, keras.config.epsilon()))


def cross_entropy(y_true, y_pred):
    """Per image: categorical cross-entropy of probabilities `y_pred` against targets `y_true` (one-hot or soft)."""
    return keras.losses.categorical_crossentropy(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))


DATA_LOSS = "data_loss"
"""The compiled metric `DataLoss` logs under; `DataLossLogs` turns it into the epoch logs' `loss`."""


@keras.saving.register_keras_serializable(package="convbench")
class DataLoss(keras.metrics.MeanMetricWrapper):
    """The data loss per epoch: cross-entropy against the targets, without label smoothing or weight
    penalty, or the multi-target loss for `label_mode: multi_target` (which is cross-entropy on the
    one-hot validation targets). The same quantity as `test_loss`."""

    def __init__(self, multi_target: bool = False, name: str = DATA_LOSS, dtype=None) -> None:
        super().__init__(fn=multi_target_crossentropy if multi_target else cross_entropy, name=name, dtype=dtype)
        self.multi_target = bool(multi_target)

    def get_config(self) -> dict[str, Any]:
        return {"multi_target": self.multi_target, "name": self.name, "dtype": self.dtype}


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


def data_loss(recipe: dict[str, Any]) -> DataLoss:
    """The metric that logs the recipe's data loss (see `DataLoss`)."""
    return DataLoss(multi_target=recipe.get("label_mode") == MULTI_TARGET_LABEL_MODE)


def objective_description(recipe: dict[str, Any], penalised: bool) -> str:
    """What Keras minimised, in words: `cross-entropy, label smoothing 0.1, + l2_penalty`."""
    if recipe.get("label_mode") == MULTI_TARGET_LABEL_MODE:
        parts = ["multi-target cross-entropy"]
    else:
        parts = ["cross-entropy"]
        smoothing = float(recipe.get("label_smoothing", 0.0))
        if smoothing:
            parts.append(f"label smoothing {smoothing:g}")
    description = ", ".join(parts)
    return f"{description} + l2_penalty" if penalised else description


def draws_targets(recipe: dict[str, Any]) -> bool:
    """Whether training draws a one-hot target from each image's distribution every batch."""
    return recipe.get("label_mode") == SAMPLED_LABEL_MODE
