"""A model compiled with its recipe: optimiser and schedule, loss, metrics, and the augmenting training wrapper."""

from __future__ import annotations

from typing import Any

import keras

from convbench.models.precision import with_loss_scaling
from convbench.training.augmentation import with_augmentation
from convbench.training.losses import data_loss, training_accuracy, training_loss
from convbench.training.optimizers import learning_rate_schedule, make_optimizer


def compile_model(model: keras.Model, recipe: dict[str, Any], steps_per_epoch: int) -> keras.Model:
    """`model` compiled with the recipe's optimiser and schedule, its loss (see `training_loss`), accuracy
    and data loss (`data_loss`, which `DataLossLogs` reports as `loss` and `val_loss`).

    Accuracy: see `training_accuracy` (in validation always against the majority label for crowd labels).
    """
    schedule = learning_rate_schedule(recipe["schedule"], recipe["epochs"], steps_per_epoch)
    model.compile(
        optimizer=with_loss_scaling(make_optimizer(recipe["optimizer"], schedule, ema=recipe.get("ema")), recipe),
        loss=training_loss(recipe),
        metrics=[training_accuracy(recipe), data_loss(recipe)],
        jit_compile=recipe.get("jit_compile", "auto"),
    )
    return model


def compile_for_training(model: keras.Model, recipe: dict[str, Any], steps_per_epoch: int) -> keras.Model:
    """The augmenting training wrapper around `model`, compiled with the recipe."""
    training_model = with_augmentation(model, recipe.get("augmentation") or {}, seed=recipe["seed"])
    return compile_model(training_model, recipe, steps_per_epoch)
