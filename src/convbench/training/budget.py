"""Training budgets: `budget: {minutes: M}` or `{epochs: E}` picks the epochs and stretches the schedule to end there.

A budget in minutes is turned into epochs by timing a few training and validation steps on the
real batches (`calibrate`); the epoch count that fits (`epochs_within`) then replaces the recipe's
`epochs`. When not even one epoch fits (a slow architecture on a short budget), the run trains the
steps of one epoch that do (`steps_within`), a fraction of an epoch that it reports, rather than
overrunning the budget; and the recipe's schedule is rescaled to that many epochs (`budgeted_recipe`). By
default (`schedule: linear`) it becomes the budget-aware schedule of Li, Yumer and Ramanan (2020),
"Budgeted Training: Rethinking Deep Neural Network Training Under Resource Constraints": the
recipe's warm-up, as the same fraction of the run, then a linear decay to zero at the last step,
so every budget ends with a fully annealed model. `schedule: recipe` keeps the recipe's own
schedule, its epoch points scaled to the budget.

`plan_budget` applies all of this to a model before `convbench.training.fit.fit` trains it, and
keeps the plan in the checkpoint folder, so a resumed run trains the same schedule. The clock is a
parameter, so the arithmetic is tested without waiting on a real one.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from convbench.training.augmentation import alternates_flips
from convbench.training.compiling import compile_for_training
from convbench.training.fingerprint import fingerprint
from convbench.training.input_pipeline import evaluation_dataset, training_dataset
from convbench.training.losses import draws_targets
from convbench.training.recipe import Constant, Cosine, Piecewise, check_block

logger = logging.getLogger(__name__)

OVERRUN_TOLERANCE = 0.05
"""A budgeted training may take this fraction longer than its budget before the overrun is warned about."""


def check_budget(budget: dict[str, Any] | None) -> dict[str, Any] | None:
    """`budget` with its `schedule` filled in (`linear`), or None for no budget (null or `{}`).

    The rules are the recipe schema's (`convbench.training.recipe.Budget`).

    Raises:
        RecipeError: Unknown keys, neither or both of `minutes` and `epochs`, a non-positive value,
            or an unknown schedule.
    """
    checked = check_block("budget", budget)
    if checked is None:
        return None
    given = "minutes" if checked.minutes is not None else "epochs"
    return {given: budget[given], "schedule": checked.schedule}


@dataclass(frozen=True)
class Calibration:
    """Seconds per training and per validation step, and what the measuring itself cost."""

    train_step_s: float
    eval_step_s: float
    overhead_s: float
    """The calibration's own wall time plus the one-off tracing the real training will pay again."""

    def epoch_s(self, train_steps: int, eval_steps: int) -> float:
        """Predicted seconds of one epoch: its training steps and the validation pass after it."""
        return train_steps * self.train_step_s + eval_steps * self.eval_step_s


def time_calls(call: Callable[[], Any], count: int, clock: Callable[[], float]) -> list[float]:
    """The duration of each of `count` calls of `call`, by `clock`."""
    durations = []
    for _ in range(count):
        started = clock()
        call()
        durations.append(clock() - started)
    return durations


def calibrate(
    train_step: Callable[[], Any],
    eval_step: Callable[[], Any],
    clock: Callable[[], float] = time.perf_counter,
    warmup_steps: int = 2,
    timed_steps: int = 5,
) -> Calibration:
    """Times `train_step` and `eval_step` (one batch each) after `warmup_steps` untimed ones.

    The steady step time is the median of the timed steps. The first call of each pays the
    tracing of the compiled function; how much longer it took than a steady step is counted in
    `overhead_s`, because the training that follows compiles (and traces) anew.
    """
    started = clock()
    train = time_calls(train_step, warmup_steps + timed_steps, clock)
    evaluation = time_calls(eval_step, 1 + max(1, timed_steps // 2), clock)
    train_step_s = statistics.median(train[warmup_steps:])
    eval_step_s = statistics.median(evaluation[1:])
    retrace_s = max(0.0, train[0] - train_step_s) + max(0.0, evaluation[0] - eval_step_s)
    return Calibration(train_step_s, eval_step_s, overhead_s=(clock() - started) + retrace_s)


def epochs_within(minutes: float, calibration: Calibration, train_steps: int, eval_steps: int) -> int:
    """The most whole epochs whose predicted time, with the calibration's overhead, fits in `minutes` (at least 1)."""
    available = minutes * 60.0 - calibration.overhead_s
    return max(1, math.floor(available / calibration.epoch_s(train_steps, eval_steps)))


def steps_within(minutes: float, calibration: Calibration, train_steps: int, eval_steps: int) -> int:
    """The training steps of one epoch that fit in `minutes`, with the calibration's overhead and one
    validation pass: `train_steps` when the whole epoch fits, fewer (at least 1) when it does not."""
    available = minutes * 60.0 - calibration.overhead_s - eval_steps * calibration.eval_step_s
    return int(min(train_steps, max(1, math.floor(available / calibration.train_step_s))))


def peak_of(schedule: dict[str, Any], epochs: int) -> tuple[float, float, float]:
    """`(peak_lr, start_fraction, peak_fraction)` of a recipe's schedule: its highest rate, where it starts
    (as a fraction of the peak) and when it gets there (as a fraction of the `epochs`)."""
    checked = check_block("schedule", schedule)
    if isinstance(checked, Cosine):
        warmup = float(checked.warmup_epochs)
        return float(checked.peak_lr), 0.0 if warmup else 1.0, warmup / epochs
    if isinstance(checked, Piecewise):
        values = [float(value) for value in checked.values]
        peak_index = values.index(max(values))
        reached = float(checked.boundaries[peak_index - 1]) / epochs if peak_index else 0.0
        return values[peak_index], values[0] / values[peak_index], reached
    if isinstance(checked, Constant):
        return float(checked.lr), 1.0, 0.0
    return float(checked.peak_lr), float(checked.start_fraction), float(checked.peak_fraction)  # triangular


def budgeted_recipe(recipe: dict[str, Any], epochs: int, schedule: str = "linear") -> dict[str, Any]:
    """`recipe` trained for `epochs`, its schedule ending at the last of them.

    `linear`: the recipe's peak rate, reached after the same fraction of the run as in the recipe
    (from the same starting rate), then linear to zero at the last step. `recipe`: the recipe's own
    schedule with its epoch points (warm-up, boundaries) scaled by `epochs / recipe["epochs"]`.
    """
    original = recipe["schedule"]
    scale = epochs / int(recipe["epochs"])
    if schedule == "linear":
        peak_lr, start_fraction, peak_fraction = peak_of(original, int(recipe["epochs"]))
        stretched = {
            "name": "triangular",
            "peak_lr": peak_lr,
            "start_fraction": start_fraction,
            "peak_fraction": min(peak_fraction, 1.0),
            "final_lr_fraction": 0.0,
        }
    elif original.get("name") == "cosine":
        stretched = {**original, "warmup_epochs": float(check_block("schedule", original).warmup_epochs) * scale}
    elif original.get("name") == "piecewise":
        stretched = {**original, "boundaries": [float(boundary) * scale for boundary in original["boundaries"]]}
    else:
        stretched = dict(original)  # triangular and constant are already in fractions of the run
    return {**recipe, "epochs": int(epochs), "schedule": stretched}


def overrun_s(budget: dict[str, Any], wall_time_s: float) -> float:
    """Seconds the training took beyond a budget in minutes (0 within it, and for a budget in epochs)."""
    if "minutes" not in budget:
        return 0.0
    return max(0.0, wall_time_s - budget["minutes"] * 60.0)


BUDGET_PLAN = "budget.json"
"""In the checkpoint folder: the epochs a budget in minutes was calibrated to, so a resumed run keeps them."""


def plan_budget(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    recipe: dict[str, Any],
    budget: dict[str, Any],
    checkpoint_dir: Path,
    clock=time.perf_counter,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe rescaled to the budget and what to report about it.

    A budget in minutes is calibrated on this model and data: a few training and validation
    steps are timed, then every weight is put back as it was, so the calibration leaves no trace
    on the training. The chosen epochs are kept in `checkpoint_dir`, so a resumed run trains the
    same schedule.

    Returns:
        The recipe and `{budget_minutes | budget_epochs, planned_epochs, predicted_epoch_s}`, and
        `epoch_fraction` when not even one epoch fits in the minutes: the recipe then trains that
        fraction of one epoch (`steps_per_epoch`), its schedule ending at its last step.
    """
    if recipe.get("fine_tuning"):
        raise ValueError(
            f"A training budget cannot rescale a two-phase recipe (fine_tuning) yet. Received budget {budget!r} "
            "for a recipe with fine_tuning: set the phases' epochs instead."
        )
    batch_size, eval_batch_size = int(recipe["batch_size"]), int(recipe["eval_batch_size"])
    train_steps = -(-len(train[0]) // batch_size)
    eval_steps = -(-len(val[0]) // eval_batch_size)
    steps = train_steps
    if "epochs" in budget:
        epochs, predicted = int(budget["epochs"]), float("nan")
        reported = {"budget_epochs": epochs}
    else:
        epochs, predicted, steps = _calibrated_epochs(
            model, train, val, num_classes, recipe, budget["minutes"], train_steps, eval_steps, checkpoint_dir, clock
        )
        reported = {"budget_minutes": float(budget["minutes"])}
    logger.info(
        "Budget %s: %s trains %d epochs (recipe: %s) with a %s schedule",
        budget,
        model.name,
        epochs,
        recipe["epochs"],
        budget["schedule"],
    )
    planned = budgeted_recipe(recipe, epochs, budget["schedule"])
    if steps < train_steps:
        logger.warning(
            "Budget %s: not one epoch of %s fits, so it trains %d of the epoch's %d steps (%.2f of an epoch)",
            budget,
            model.name,
            steps,
            train_steps,
            steps / train_steps,
        )
        planned["steps_per_epoch"] = steps
        reported["epoch_fraction"] = steps / train_steps
    return planned, reported | {"planned_epochs": epochs, "predicted_epoch_s": predicted}


def _calibrated_epochs(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    recipe: dict[str, Any],
    minutes: float,
    train_steps: int,
    eval_steps: int,
    checkpoint_dir: Path,
    clock,
) -> tuple[int, float, int]:
    """Epochs that fit in `minutes`, the predicted seconds per epoch and the training steps per epoch
    (fewer than `train_steps` when not one epoch fits), calibrated once per checkpoint folder."""
    key = fingerprint({**recipe, "budget_minutes": minutes}, model, *train, *val)
    plan_file = checkpoint_dir / BUDGET_PLAN
    if plan_file.is_file():
        plan = json.loads(plan_file.read_text())
        if plan.get("fingerprint") == key:
            logger.info("Budget: keeping the %d epochs calibrated before the interruption", plan["epochs"])
            return int(plan["epochs"]), float(plan["predicted_epoch_s"]), int(plan.get("steps", train_steps))
    snapshot = [keras.ops.convert_to_numpy(variable) for variable in model.variables]
    training_model = compile_for_training(model, recipe, train_steps)
    train_batches = iter(
        training_dataset(
            *train,
            num_classes,
            int(recipe["batch_size"]),
            seed=int(recipe["seed"]),
            sample_targets=draws_targets(recipe),
            alternating_flips=alternates_flips(recipe),
        ).repeat()
    )
    val_batches = iter(evaluation_dataset(*val, num_classes, int(recipe["eval_batch_size"])).repeat())
    calibration = calibrate(
        lambda: training_model.train_on_batch(*next(train_batches)),
        lambda: training_model.test_on_batch(*next(val_batches)),
        clock=clock,
    )
    for variable, value in zip(model.variables, snapshot, strict=True):
        variable.assign(value)
    epochs = epochs_within(minutes, calibration, train_steps, eval_steps)
    steps = steps_within(minutes, calibration, train_steps, eval_steps) if epochs == 1 else train_steps
    predicted = calibration.epoch_s(train_steps, eval_steps)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    plan = {"fingerprint": key, "epochs": epochs, "predicted_epoch_s": predicted, "steps": steps}
    plan_file.write_text(json.dumps(plan))
    logger.info(
        "Budget calibration: %.3f s per training step, %.3f s per validation step, %.1f s overhead -> %d epochs of %.1f s",
        calibration.train_step_s,
        calibration.eval_step_s,
        calibration.overhead_s,
        epochs,
        predicted,
    )
    return epochs, predicted, steps
