"""Training budgets, with an injected clock: no assertion depends on how fast this machine is."""

import itertools
import json

import numpy as np
import pytest
from tiny_training import RECIPE, new_model, tiny_data

from convbench.training import fit as fit_module
from convbench.training.budget import (
    BUDGET_PLAN,
    Calibration,
    budgeted_recipe,
    calibrate,
    check_budget,
    epochs_within,
    overrun_s,
    plan_budget,
    steps_within,
)
from convbench.training.fit import fit
from convbench.training.optimizers import learning_rate_schedule


class ScriptedClock:
    """A clock that only moves when a scripted step runs: `advance(seconds)` is what the step "took"."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step(self, durations):
        remaining = iter(durations)

        def run():
            self.now += next(remaining)

        return run


class TickingClock:
    """A clock that moves `tick` seconds every time it is read."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_calibration_takes_the_steady_step_time_and_counts_the_first_steps_tracing_as_overhead():
    clock = ScriptedClock()
    train = clock.step([3.5] + [0.5] * 6)  # the first step traces the function: 3 s more than a steady one
    evaluation = clock.step([1.2, 0.2, 0.2])
    calibration = calibrate(train, evaluation, clock=clock, warmup_steps=2, timed_steps=5)
    assert calibration.train_step_s == pytest.approx(0.5) and calibration.eval_step_s == pytest.approx(0.2)
    # measuring cost 3.5 + 6 * 0.5 + 1.2 + 2 * 0.2 = 8.1 s; the training will trace again: 3 + 1 s
    assert calibration.overhead_s == pytest.approx(12.1)
    assert calibration.epoch_s(train_steps=10, eval_steps=5) == pytest.approx(6.0)


def test_the_epoch_count_is_the_most_that_fits_in_the_budget_with_the_overhead():
    calibration = Calibration(train_step_s=0.5, eval_step_s=0.2, overhead_s=12.1)
    epochs = epochs_within(1.0, calibration, train_steps=10, eval_steps=5)
    assert epochs == 7  # 12.1 + 7 * 6 = 54.1 s fits in 60 s
    assert 12.1 + (epochs + 1) * 6.0 > 60.0  # one more would not
    assert epochs_within(10.0, calibration, 10, 5) == 97
    assert epochs_within(0.01, calibration, 10, 5) == 1  # a budget too small still trains one epoch


def rates(recipe, steps_per_epoch):
    schedule = learning_rate_schedule(recipe["schedule"], recipe["epochs"], steps_per_epoch)
    return [float(schedule(step)) for step in range(recipe["epochs"] * steps_per_epoch)]


def test_the_linear_budget_schedule_keeps_the_warmup_fraction_and_reaches_zero_at_the_last_step():
    recipe = {"epochs": 100, "schedule": {"name": "cosine", "peak_lr": 0.1, "warmup_epochs": 5}}
    planned = budgeted_recipe(recipe, epochs=20, schedule="linear")
    assert planned["epochs"] == 20 and recipe["epochs"] == 100  # the recipe itself is left alone
    lr = rates(planned, steps_per_epoch=10)
    assert len(lr) == 200
    assert lr[0] == pytest.approx(0.0) and lr[10] == pytest.approx(0.1)  # peak after 5% of the run
    assert lr[-1] == pytest.approx(0.0, abs=1e-9)  # the last step
    assert lr[-2] > 0 and all(a >= b for a, b in itertools.pairwise(lr[10:]))  # linear decay


def test_the_recipe_budget_schedule_scales_the_recipes_epoch_points():
    recipe = {"epochs": 10, "schedule": {"name": "piecewise", "boundaries": [5, 8], "values": [0.1, 0.01, 0.001]}}
    planned = budgeted_recipe(recipe, epochs=4, schedule="recipe")
    assert planned["schedule"]["boundaries"] == [2.0, 3.2]
    lr = rates(planned, steps_per_epoch=5)
    assert lr[10] == pytest.approx(0.1, rel=1e-6)  # up to the boundary at epoch 2 (step 10)
    assert lr[11] == pytest.approx(0.01, rel=1e-6) and lr[-1] == pytest.approx(0.001, rel=1e-6)
    cosine = budgeted_recipe(
        {"epochs": 10, "schedule": {"name": "cosine", "peak_lr": 1, "warmup_epochs": 2}}, 5, "recipe"
    )
    assert cosine["schedule"]["warmup_epochs"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"minutes": 5, "epochs": 3}, "exactly one of minutes and epochs"),
        ({"schedule": "linear"}, "exactly one of minutes and epochs"),
        ({"minutes": -1}, r"budget\.minutes must be a positive number; received -1"),
        ({"minutes": True}, r"budget\.minutes must be a positive number; received True"),
        ({"epochs": 2.5}, r"budget\.epochs must be a whole number >= 1; received 2\.5"),
        ({"hours": 1}, r"budget\.hours is unknown: a budget takes minutes, epochs or schedule"),
        ({"epochs": 3, "schedule": "cosine"}, r"budget\.schedule must be linear or recipe; received 'cosine'"),
    ],
)
def test_a_malformed_budget_is_refused_with_what_was_expected(budget, message):
    with pytest.raises(ValueError, match=message):
        check_budget(budget)


def test_a_budget_defaults_to_the_linear_schedule_and_none_means_no_budget():
    assert check_budget({"minutes": 10}) == {"minutes": 10, "schedule": "linear"}
    assert check_budget(None) is None and check_budget({}) is None


def test_only_time_beyond_a_budget_in_minutes_is_an_overrun():
    assert overrun_s({"minutes": 1}, 75.0) == pytest.approx(15.0)
    assert overrun_s({"minutes": 1}, 59.0) == 0.0
    assert overrun_s({"epochs": 3}, 1e6) == 0.0


def test_planning_calibrates_on_the_real_model_leaves_its_weights_alone_and_is_kept_for_a_resume(tmp_path):
    model = new_model()
    before = [np.copy(weight) for weight in model.get_weights()]
    recipe = {**RECIPE, "batch_size": 16, "eval_batch_size": 16}
    train, val = tiny_data(64, 0), tiny_data(32, 1)  # 4 training and 2 validation steps per epoch
    # Every clock read moves 1 s: each timed step takes 1 s, and the 22 reads span 21 s of overhead.
    planned, report = plan_budget(
        model, train, val, 3, recipe, {"minutes": 1, "schedule": "linear"}, tmp_path, TickingClock(1.0)
    )
    assert report == {"budget_minutes": 1.0, "planned_epochs": 6, "predicted_epoch_s": 6.0}  # (60 - 21) / 6 = 6.5
    assert planned["epochs"] == 6 and planned["schedule"]["final_lr_fraction"] == 0.0
    for kept, weight in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, weight)
    assert json.loads((tmp_path / BUDGET_PLAN).read_text())["epochs"] == 6
    # A resumed run reads the plan instead of calibrating again on a clock that would say otherwise.
    _, again = plan_budget(
        model, train, val, 3, recipe, {"minutes": 1, "schedule": "linear"}, tmp_path, TickingClock(100.0)
    )
    assert again["planned_epochs"] == 6


def test_a_budget_in_epochs_trains_that_many_with_the_schedule_ending_there(tmp_path, mlflow_run):
    recipe = {**RECIPE, "epochs": 50, "budget": {"epochs": 2}}
    _, history, summary = fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")
    assert len(history["loss"]) == 2 and summary["epochs"] == 2
    assert summary["budget_epochs"] == 2 and summary["planned_epochs"] == 2 and summary["budget_overrun_s"] == 0.0
    assert history["lr"][-1] < history["lr"][0]  # decaying towards zero at the end of epoch 2, not of epoch 50


def test_a_two_phase_recipe_refuses_a_budget_rather_than_ignoring_it(tmp_path):
    recipe = {**RECIPE, "fine_tuning": {"epochs": 1}, "budget": {"epochs": 2}}
    with pytest.raises(ValueError, match="cannot rescale a two-phase recipe"):
        fit(new_model(), tiny_data(32, 0), tiny_data(16, 1), 3, recipe, tmp_path / "ckpt", "resnet")


def test_when_not_one_epoch_fits_the_steps_that_fit_are_trained_and_at_least_one():
    calibration = Calibration(train_step_s=2.0, eval_step_s=1.0, overhead_s=10.0)
    # 60 s - 10 s overhead - 5 validation steps of 1 s = 45 s: 22 steps of 2 s, of the epoch's 100
    assert steps_within(1, calibration, train_steps=100, eval_steps=5) == 22
    assert steps_within(100, calibration, train_steps=100, eval_steps=5) == 100  # a whole epoch fits: all of it
    assert steps_within(0.1, calibration, train_steps=100, eval_steps=5) == 1  # nothing fits: one step, an overrun


def test_a_budget_smaller_than_one_epoch_trains_that_fraction_of_an_epoch_and_reports_it(tmp_path, monkeypatch):
    # Each clock read moves 1 s: steps of 1 s and 21 s of overhead (as above). A budget of 25.5 s
    # leaves 25.5 - 21 - 2 validation steps = 2.5 s: 2 of the epoch's 4 training steps.
    monkeypatch.setattr(fit_module, "plan_budget", lambda *args: plan_budget(*args, clock=TickingClock(1.0)))
    recipe = {**RECIPE, "batch_size": 16, "eval_batch_size": 16, "epochs": 30, "budget": {"minutes": 25.5 / 60}}
    _, history, summary = fit(new_model(), tiny_data(64, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")
    assert len(history["loss"]) == 1 and summary["epochs"] == 1 and summary["planned_epochs"] == 1
    assert summary["epoch_fraction"] == pytest.approx(0.5)
    # The schedule ends at the last step trained (step 2, rate 0), not half-way through a whole epoch.
    assert history["lr"][-1] == pytest.approx(0.0, abs=1e-7)
    assert json.loads((tmp_path / "ckpt" / BUDGET_PLAN).read_text())["steps"] == 2


def test_a_fraction_of_an_epoch_takes_only_that_many_batches_of_each_epochs_order():
    from convbench.training.input_pipeline import training_dataset

    images, labels = tiny_data(64, 0)
    whole = list(training_dataset(images, labels, 3, 16, seed=1, epochs=range(0, 2)))
    part = list(training_dataset(images, labels, 3, 16, seed=1, epochs=range(0, 2), steps_per_epoch=2))
    assert len(whole) == 8 and len(part) == 4
    for kept, full in zip(part, whole[:2] + whole[4:6], strict=True):  # epoch 1's part starts where epoch 1 does
        np.testing.assert_array_equal(kept[0].numpy(), full[0].numpy())
