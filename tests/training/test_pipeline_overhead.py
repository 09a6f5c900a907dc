"""The pipeline's training loop adds at most 10% per step over a bare Keras loop, measured as a ratio in one process.

`convbench.training.fit.fit` is what the `train_model` node (and so every `kedro run`) and the
time-to-accuracy benchmark train with: the recipe's callbacks (airbench's lookahead), the data-loss
logs, the epoch timer, the learning-rate logger, the MLflow curves, the interrupt handler and the
checkpoint. The bare loop is Keras' `fit` of the same compiled training model (augmentation inside)
on the same `training_dataset`, with no callback at all. Both run in this process, interleaved, and
each step is timed from one batch's end to the next within an epoch, so every callback's per-batch
work counts and the epoch-end work (validation, checkpoint, MLflow) does not: that is per epoch,
not per step. A callback that sleeps a third of a step is injected to show the measurement sees
such an overhead.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from convbench.config import RUN_RECIPE_SETTINGS, ConvbenchConfigLoader
from convbench.pipelines.training.nodes import build_model, resolve_recipe
from convbench.settings import CONFIG_LOADER_ARGS
from convbench.training.compiling import compile_for_training
from convbench.training.fit import fit
from convbench.training.input_pipeline import training_dataset

PROJECT = Path(__file__).resolve().parents[2]
RATIO_LIMIT = 1.10

pytestmark = pytest.mark.timed  # run alone by `make test`: a second test process beside it adds to its steps
ARCHITECTURE = "airbench"  # the recipe with the most per-step work besides the step (lookahead)
STEPS_PER_EPOCH, EPOCHS, ROUNDS = 16, 2, 2


class BatchIntervals(keras.callbacks.Callback):
    """Seconds from each batch's end to the next one's within an epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.intervals: list[float] = []
        self._last: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now


def step_time(intervals: list[float]) -> float:
    """The lower quartile of the steps' times: a busy machine only ever adds time to a step, and an
    overhead of the loop adds to every step, so this quantile moves with the overhead and less with the load."""
    return statistics.quantiles(intervals, n=4)[0]


class SleepEveryBatch(keras.callbacks.Callback):
    """An injected per-step overhead."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


@pytest.fixture(scope="module")
def recipe_and_data():
    parameters = ConvbenchConfigLoader(str(PROJECT / "conf"), env="base", **CONFIG_LOADER_ARGS)["parameters"]
    recipe = resolve_recipe(
        parameters["training"][ARCHITECTURE],
        parameters["recipe_overrides"]["cifar10"],
        {**parameters[RUN_RECIPE_SETTINGS][ARCHITECTURE], "model": {"widths": [16, 32, 32]}},
    )
    recipe |= {"epochs": EPOCHS, "batch_size": 64, "eval_batch_size": 256, "seed": 0}
    rng = np.random.default_rng(0)
    count = STEPS_PER_EPOCH * recipe["batch_size"]
    images = rng.integers(0, 256, (count + 256, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, count + 256)
    return recipe, images, labels, np.arange(count), np.arange(count, count + 256)


def _model(recipe, images, train_indices):
    statistics_ = {"mean": [128.0] * 3, "std": [64.0] * 3}
    return build_model(images, train_indices, [str(k) for k in range(10)], statistics_, recipe, ARCHITECTURE)


def bare_intervals(recipe, images, labels, train_indices, val_indices) -> list[float]:
    model = _model(recipe, images, train_indices)
    training_model = compile_for_training(model, recipe, STEPS_PER_EPOCH)
    timer = BatchIntervals()
    epochs = range(EPOCHS)
    training_model.fit(  # the batches `fit` feeds: every epoch's order from (seed, epoch)
        training_dataset(images[train_indices], labels[train_indices], 10, recipe["batch_size"], 0, epochs=epochs),
        steps_per_epoch=STEPS_PER_EPOCH,
        epochs=EPOCHS,
        callbacks=[timer],
        shuffle=False,
        verbose=0,
    )
    return timer.intervals


def pipeline_intervals(recipe, images, labels, train_indices, val_indices, checkpoint_dir, extra=()) -> list[float]:
    model = _model(recipe, images, train_indices)
    timer = BatchIntervals()
    fit(
        model,
        (images[train_indices], labels[train_indices]),
        (images[val_indices], labels[val_indices]),
        10,
        recipe,
        checkpoint_dir,
        ARCHITECTURE,
        callbacks=[timer, *extra],
    )
    return timer.intervals


def test_pipeline_adds_at_most_ten_percent_per_step_over_a_bare_loop(recipe_and_data, mlflow_run, tmp_path):
    import mlflow

    bare: list[float] = []
    pipeline: list[float] = []
    for round_ in range(ROUNDS):  # interleaved, in both orders, so a change of the machine's load hits both alike
        if round_ % 2:
            pipeline += pipeline_intervals(*recipe_and_data, tmp_path / f"pipeline-{round_}")
        bare += bare_intervals(*recipe_and_data)
        if not round_ % 2:
            pipeline += pipeline_intervals(*recipe_and_data, tmp_path / f"pipeline-{round_}")
    injected = pipeline_intervals(*recipe_and_data, tmp_path / "injected", extra=[SleepEveryBatch(step_time(bare) / 3)])
    bare_step, pipeline_step = step_time(bare), step_time(pipeline)
    ratio = pipeline_step / bare_step
    injected_ratio = step_time(injected) / bare_step
    summary = (
        f"step (lower quartile): bare {bare_step * 1000:.1f} ms, pipeline {pipeline_step * 1000:.1f} ms (ratio {ratio:.3f}), "
        f"with a third of a step injected {injected_ratio:.3f}"
    )
    print(summary)
    assert len(bare) == len(pipeline) == ROUNDS * EPOCHS * (STEPS_PER_EPOCH - 1)
    assert injected_ratio > RATIO_LIMIT, f"the measurement does not see an injected overhead: {summary}"
    assert ratio <= RATIO_LIMIT, f"the pipeline adds more than {RATIO_LIMIT - 1:.0%} per step: {summary}"
    # The pipeline really ran its bookkeeping: the curves reached MLflow, every epoch.
    history = mlflow.MlflowClient().get_metric_history(mlflow_run.info.run_id, f"{ARCHITECTURE}.epoch_time_s")
    assert len(history) == (ROUNDS + 1) * EPOCHS
