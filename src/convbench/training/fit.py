"""Fits a model from a recipe: optimiser, schedule, augmentation, checkpoints and MLflow curves."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from convbench.merging import deep_merge
from convbench.metrics import HISTORY_METRICS, PENALTY_METRIC, metric_key
from convbench.models.layers import PRETRAINED_BASE
from convbench.tracking import logged_steps
from convbench.training.augmentation import alternates_flips
from convbench.training.budget import OVERRUN_TOLERANCE, check_budget, overrun_s, plan_budget
from convbench.training.callbacks import (
    DataLossLogs,
    EpochTimer,
    InterruptCheckpoint,
    LearningRateLogger,
    MlflowEpochLogger,
    ResumableCheckpoint,
    early_stopping,
    load_checkpoint,
    nested_layers,
    recipe_callbacks,
)
from convbench.training.compiling import compile_for_training
from convbench.training.distribute import check_built_under, distributed_recipe, warn_if_uneven
from convbench.training.distribute import scope as distribute_scope
from convbench.training.fingerprint import fingerprint
from convbench.training.input_pipeline import evaluation_dataset, training_dataset
from convbench.training.losses import draws_targets, objective_description

logger = logging.getLogger(__name__)

RESUMED_FROM_TAG = "convbench.resumed_from_run"
"""Tag of a run that resumed a checkpoint: the MLflow run that wrote it (killed, failed or interrupted)."""


@dataclass(frozen=True)
class Phase:
    """One `fit` call of a recipe: its own optimiser, schedule and epochs, with the base frozen or not."""

    name: str
    recipe: dict[str, Any]
    pretrained_base_trainable: bool | None  # None: a model without a pretrained part, left as built
    first_epoch: int  # epochs of earlier phases, so curves and checkpoints continue where they left off


def training_phases(recipe: dict[str, Any]) -> list[Phase]:
    """The recipe as one phase, or two when it has a `fine_tuning` block (transfer learning).

    With `fine_tuning`, the recipe's own `epochs`, `optimizer` and `schedule` train the new head
    on a frozen pretrained base; then the recipe with `fine_tuning` merged in key by key (`epochs`,
    and any `optimizer`/`schedule` values, see `convbench.merging.deep_merge`) trains the whole
    network, usually at a lower learning rate.
    """
    fine_tuning = recipe.get("fine_tuning")
    if not fine_tuning:
        return [Phase("training", recipe, pretrained_base_trainable=None, first_epoch=0)]
    head_recipe = {key: value for key, value in recipe.items() if key != "fine_tuning"}
    whole_recipe = deep_merge(head_recipe, fine_tuning)
    return [
        Phase("head", head_recipe, pretrained_base_trainable=False, first_epoch=0),
        Phase("fine_tuning", whole_recipe, pretrained_base_trainable=True, first_epoch=int(recipe["epochs"])),
    ]


def set_pretrained_base_trainable(model: keras.Model, trainable: bool) -> None:
    """Freezes or unfreezes every layer named `pretrained_base` inside `model` (nested models included).

    Its batch normalisation layers stay frozen when it is unfrozen, so they keep running in
    inference mode with their pretrained statistics, as Keras' fine-tuning guide recommends
    (small batches of a new dataset would otherwise overwrite them).

    Raises:
        ValueError: `model` has no such layer, so a fine-tuning recipe cannot apply to it.
    """
    found = [layer for layer in nested_layers(model) if layer.name == PRETRAINED_BASE]
    if not found:
        raise ValueError(
            f"The recipe has a `fine_tuning` block, which freezes the layer named {PRETRAINED_BASE!r} first, "
            f"but model {model.name!r} has no such layer (is `weights: imagenet` set in the recipe's `model`?)"
        )
    for layer in found:
        layer.trainable = trainable
        if trainable:
            for inner in nested_layers(layer):
                if isinstance(inner, keras.layers.BatchNormalization):
                    inner.trainable = False


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    recipe: dict[str, Any],
    checkpoint_dir: Path,
    metric_prefix: str,
    callbacks: list[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict[str, list[float]], dict[str, Any]]:
    """Trains `model` on `train`, validating on `val` each epoch; resumes from `checkpoint_dir`.

    `callbacks` run after the recipe's and the MLflow logger, before the checkpoint of each epoch
    (a search's pruning callback stops a trial there).

    `train` and `val` are (uint8 images, class labels) or (uint8 images, target distributions
    [N, num_classes]); with distributions the recipe's `label_mode` may pick the multi-target
    loss or per-batch one-hot draws (`convbench.training.losses`).

    A recipe with `fine_tuning` trains in two phases (see `training_phases`), each with its
    own checkpoint; the history and the MLflow curves run on across them. The checkpoints stay
    after the last epoch, so a run that fails later (saving, reporting) does not train again;
    `CheckpointCleanupHook` removes them once the whole Kedro run succeeds.

    A recipe with `distribute` (`convbench.training.distribute`) trains under its strategy: the
    recipe is scaled first (`distributed_recipe`, nothing to do for a resolved recipe), `model` must
    have been built in the strategy's scope (`build_model`), and the budget calibration, compiling,
    fitting and loading a checkpoint all happen in that scope.

    Returns the trained model (without augmentation), the per-epoch history and a summary
    (parameters, epochs, wall time, training images/s, replicas and the global batch size).
    """
    start = time.perf_counter()
    recipe = distributed_recipe(recipe)
    check_built_under(model, recipe.get("distribute"))
    warn_if_uneven(len(train[0]), recipe)
    budget = check_budget(recipe.get("budget"))
    budget_summary: dict[str, Any] = {}
    history: dict[str, list[float]] = {}
    resumed_from = 0
    with distribute_scope(recipe.get("distribute")):
        if budget:
            recipe, budget_summary = plan_budget(model, train, val, num_classes, recipe, budget, checkpoint_dir)
        phases = training_phases(recipe)
        for phase in phases:
            phase_dir = checkpoint_dir if len(phases) == 1 else checkpoint_dir / phase.name
            model, phase_history, phase_resumed_from = _fit_phase(
                model, train, val, num_classes, phase, phase_dir, metric_prefix, list(callbacks)
            )
            resumed_from = max(resumed_from, phase_resumed_from)
            for name, values in phase_history.items():
                history.setdefault(name, []).extend(values)
    epoch_times = history.get("epoch_time_s", [])
    train_times = history.get("train_time_s", [])
    steady = train_times[1:] or train_times
    images_per_epoch = min(len(train[0]), epoch_steps(len(train[0]), recipe) * int(recipe["batch_size"]))
    summary = {
        "parameters": trainable_parameters(model),  # as papers count them
        "total_parameters": int(model.count_params()),
        "epochs": len(epoch_times),
        "resumed_from_epoch": resumed_from,
        "stopped_early": len(epoch_times) < sum(int(phase.recipe["epochs"]) for phase in phases),
        "wall_time_s": float(sum(epoch_times)),
        "this_run_time_s": time.perf_counter() - start,
        "train_images_per_s": float(images_per_epoch / np.median(steady)) if steady else float("nan"),
        "replicas": int((recipe.get("distribute") or {}).get("replicas", 1)),
        "global_batch_size": int(recipe["batch_size"]),  # split across the replicas
        "objective": objective_description(recipe, penalised=any(history.get(PENALTY_METRIC) or [])),
    }
    if budget:
        summary |= budget_summary | {"budget_overrun_s": overrun_s(budget, summary["this_run_time_s"])}
        if summary["budget_overrun_s"] > OVERRUN_TOLERANCE * budget.get("minutes", 0) * 60:
            logger.warning(
                "%s overran its budget of %s min by %.0f s (%d epochs, predicted %.1f s each, took %.1f s on average)",
                model.name,
                budget["minutes"],
                summary["budget_overrun_s"],
                summary["epochs"],
                budget_summary["predicted_epoch_s"],
                np.mean(epoch_times) if epoch_times else float("nan"),
            )
    return model, history, summary


def epoch_steps(images: int, recipe: dict[str, Any]) -> int:
    """Training steps per epoch: every batch of `images`, or the recipe's `steps_per_epoch` if fewer
    (a budget that does not fit one epoch sets it, see `plan_budget`)."""
    every_batch = -(-images // int(recipe["batch_size"]))
    return min(every_batch, int(recipe.get("steps_per_epoch") or every_batch))


def trainable_parameters(model: keras.Model) -> int:
    """Trainable parameters of `model`, the figure papers and PyTorch report."""
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def _fit_phase(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    phase: Phase,
    checkpoint_dir: Path,
    metric_prefix: str,
    extra_callbacks: list[keras.callbacks.Callback],
) -> tuple[keras.Model, dict[str, list[float]], int]:
    """One phase of `fit`: the trained model, this phase's history, and the epoch it resumed from."""
    recipe = phase.recipe
    train_images, train_labels = train
    val_images, val_labels = val
    batch_size = int(recipe["batch_size"])
    steps_per_epoch = epoch_steps(len(train_images), recipe)
    if phase.pretrained_base_trainable is not None:
        set_pretrained_base_trainable(model, phase.pretrained_base_trainable)
    run_fingerprint = fingerprint(recipe, model, train_images, train_labels, val_images, val_labels)
    keras.utils.set_random_seed(int(recipe["seed"]) + phase.first_epoch)

    resumed = load_checkpoint(checkpoint_dir, run_fingerprint)
    steps_into_epoch = 0
    if resumed:
        training_model, state = resumed
        model = training_model.get_layer(model.name)
        history, initial_epoch = state["history"], state["epochs_done"]
        logged: set[int] = set()
        steps_into_epoch = int(state.get("steps_into_epoch", 0))
        if state.get("stopped_early"):
            initial_epoch = int(recipe["epochs"])  # finished: early stopping ended it
        logger.info(
            "Resuming %s (%s) from its checkpoint after epoch %d (and %d batches) of %d",
            model.name,
            phase.name,
            initial_epoch,
            steps_into_epoch,
            recipe["epochs"],
        )
        active = mlflow.active_run()
        if active and state.get("mlflow_run_id") == active.info.run_id:
            # the same run wrote the checkpoint (a Dask task run again on another worker): it has the
            # epochs it logged before it was lost
            logged = logged_steps(active.info.run_id, metric_key(metric_prefix, HISTORY_METRICS[0]))
        elif active and state.get("mlflow_run_id"):
            mlflow.set_tag(RESUMED_FROM_TAG, state["mlflow_run_id"])
    else:
        training_model = compile_for_training(model, recipe, steps_per_epoch)
        history, initial_epoch, logged = {}, 0, set()

    checkpoint = ResumableCheckpoint(checkpoint_dir, run_fingerprint, history)
    interrupt = InterruptCheckpoint(checkpoint, steps_offset=steps_into_epoch)
    epoch_logger = MlflowEpochLogger(metric_prefix, replay=history, first_step=phase.first_epoch + 1, logged=logged)
    callbacks = [
        DataLossLogs(),  # first: every later callback (early stopping, MLflow, checkpoint) sees the data loss
        EpochTimer(),
        LearningRateLogger(),
        *early_stopping(recipe.get("early_stopping"), checkpoint.history),
        *recipe_callbacks(recipe, steps_per_epoch, steps_done=initial_epoch * steps_per_epoch + steps_into_epoch),
        interrupt,
        checkpoint,  # before the MLflow logger: an epoch logged is an epoch checkpointed, so a resume logs none twice
        epoch_logger,
        *extra_callbacks,
    ]

    def train(epochs: range, skip_steps: int = 0) -> None:
        training_model.fit(
            training_dataset(
                train_images,
                train_labels,
                num_classes,
                batch_size,
                seed=int(recipe["seed"]),
                sample_targets=draws_targets(recipe),
                alternating_flips=alternates_flips(recipe),
                epochs=epochs,
                skip_steps=skip_steps,
                steps_per_epoch=steps_per_epoch,
            ),
            steps_per_epoch=steps_per_epoch - skip_steps,
            validation_data=evaluation_dataset(val_images, val_labels, num_classes, int(recipe["eval_batch_size"])),
            epochs=epochs.stop,
            initial_epoch=epochs.start,
            callbacks=callbacks,
            shuffle=False,  # the dataset orders every epoch itself
            verbose=1 if sys.stderr.isatty() else 2,
        )

    try:
        if steps_into_epoch and initial_epoch < int(recipe["epochs"]):
            # Finish the epoch the interrupted run was in, from the batch it stopped at (same order).
            train(range(initial_epoch, initial_epoch + 1), skip_steps=steps_into_epoch)
            initial_epoch += 1
            interrupt.steps_offset = 0
        if initial_epoch >= int(recipe["epochs"]):
            epoch_logger.log_replay()  # a finished run: no `fit` (under JAX it needs a first batch to build)
        elif not training_model.stop_training:
            train(range(initial_epoch, int(recipe["epochs"])))
    finally:
        interrupt.restore_handlers()
    return model, checkpoint.history, phase.first_epoch + state["epochs_done"] if resumed else 0
