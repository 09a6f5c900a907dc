"""Fits a model from a recipe: optimiser, schedule, augmentation, checkpoints and MLflow curves."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convbench.training.augmentation import with_augmentation
from convbench.training.callbacks import (
    EpochTimer,
    LearningRateLogger,
    MlflowEpochLogger,
    ResumableCheckpoint,
    load_checkpoint,
)
from convbench.training.input_pipeline import evaluation_dataset, training_dataset
from convbench.training.optimizers import learning_rate_schedule, make_optimizer

logger = logging.getLogger(__name__)


def fingerprint(recipe: dict[str, Any], model: keras.Model, *arrays: np.ndarray) -> str:
    """A short hash of what makes two trainings the same: recipe, model (normalisation included), data."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    digest.update(model.to_json().encode())
    for array in arrays:
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def compile_model(model: keras.Model, recipe: dict[str, Any], steps_per_epoch: int) -> keras.Model:
    """`model` compiled with the recipe's optimiser and schedule, label-smoothed loss and accuracy."""
    schedule = learning_rate_schedule(recipe["schedule"], recipe["epochs"], steps_per_epoch)
    model.compile(
        optimizer=make_optimizer(recipe["optimizer"], schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(recipe.get("label_smoothing", 0.0))),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=recipe.get("jit_compile", "auto"),
    )
    return model


def compile_for_training(model: keras.Model, recipe: dict[str, Any], steps_per_epoch: int) -> keras.Model:
    """The augmenting training wrapper around `model`, compiled with the recipe."""
    training_model = with_augmentation(model, recipe.get("augmentation") or {}, seed=recipe["seed"])
    return compile_model(training_model, recipe, steps_per_epoch)


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    recipe: dict[str, Any],
    checkpoint_dir: Path,
    metric_prefix: str,
) -> tuple[keras.Model, dict[str, list[float]], dict[str, Any]]:
    """Trains `model` on `train`, validating on `val` each epoch; resumes from `checkpoint_dir`.

    The checkpoint stays after the last epoch, so a run that fails later (saving, reporting)
    does not train again; `CheckpointCleanupHook` removes it once the whole Kedro run succeeds.

    Returns the trained model (without augmentation), the per-epoch history and a summary
    (parameters, epochs, wall time, training images/s).
    """
    train_images, train_labels = train
    val_images, val_labels = val
    batch_size = int(recipe["batch_size"])
    steps_per_epoch = -(-len(train_images) // batch_size)
    run_fingerprint = fingerprint(recipe, model, train_images, train_labels, val_images, val_labels)
    keras.utils.set_random_seed(int(recipe["seed"]))

    resumed = load_checkpoint(checkpoint_dir, run_fingerprint)
    if resumed:
        training_model, state = resumed
        model = training_model.get_layer(model.name)
        history, initial_epoch = state["history"], state["epochs_done"]
        logger.info("Resuming %s from its checkpoint after epoch %d of %d", model.name, initial_epoch, recipe["epochs"])
    else:
        training_model = compile_for_training(model, recipe, steps_per_epoch)
        history, initial_epoch = {}, 0

    callbacks = [
        EpochTimer(),
        LearningRateLogger(),
        MlflowEpochLogger(metric_prefix, replay=history),
        ResumableCheckpoint(checkpoint_dir, run_fingerprint, history),
    ]
    start = time.perf_counter()
    training_model.fit(
        training_dataset(train_images, train_labels, num_classes, batch_size, seed=int(recipe["seed"])),
        validation_data=evaluation_dataset(val_images, val_labels, num_classes, int(recipe["eval_batch_size"])),
        epochs=int(recipe["epochs"]),
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=1 if sys.stderr.isatty() else 2,
    )
    history = callbacks[-1].history
    epoch_times = history.get("epoch_time_s", [])
    train_times = history.get("train_time_s", [])
    steady = train_times[1:] or train_times
    summary = {
        "parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),  # trainable, as papers count
        "total_parameters": int(model.count_params()),
        "epochs": len(epoch_times),
        "resumed_from_epoch": initial_epoch,
        "wall_time_s": float(sum(epoch_times)),
        "this_run_time_s": time.perf_counter() - start,
        "train_images_per_s": float(len(train_images) / np.median(steady)) if steady else float("nan"),
    }
    return model, history, summary
