"""`distribute: {strategy: mirrored}`: one training on several devices (convbench.training.distribute).

The two-device trainings run in one subprocess (tests/training/distributed_fit.py), which
configures two logical CPU devices before TensorFlow initialises; this process has one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from tiny_training import RECIPE, new_model, tiny_data

from convbench.config import recipes
from convbench.merging import deep_merge
from convbench.pipelines.training.nodes import build_model, resolve_recipe
from convbench.training import distribute
from convbench.training.fit import fit

SCRIPT = Path(__file__).with_name("distributed_fit.py")
PROJECT = Path(__file__).parents[2]

LOSS_TOLERANCE = 1e-5
"""Largest difference allowed between the losses (and weights) of one device and two on the same batches.

Two replicas compute the same float32 arithmetic as one device, except that each batch's gradient
is the sum of two half-batch gradients (the all-reduce) instead of one sum over the batch, and the
epoch's mean loss is summed in another order; float32 rounds those sums differently (about 1e-7
relative). Measured on this tiny MLP over 12 SGD steps: at most 9e-8 in any epoch's loss or
validation loss and 1e-7 in any weight. 1e-5 leaves a 100x margin for other CPUs and oneDNN
builds, while another batch size, learning rate or seed changes these losses by more than 1e-2.
"""

ONE_CPU = {"strategy": "mirrored", "devices": ["/cpu:0"]}
"""A one-replica mirrored strategy, which this process (one CPU device) can create."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The scenarios of distributed_fit.py: {name: {recipe, history, summary, interrupted, weights}}."""
    out = tmp_path_factory.mktemp("distributed")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], cwd=PROJECT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        with np.load(out / f"{name}.npz") as weights:
            result["weights"] = [weights[key] for key in weights.files]
    return results


def max_difference(first: list, second: list) -> float:
    assert len(first) == len(second)
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(first, second, strict=True))


def test_two_replicas_with_the_same_global_batch_give_one_devices_loss_curve(runs):
    """`scale: none`: batch 32 split 16 + 16 over two devices trains like batch 32 on one, within `LOSS_TOLERANCE`."""
    single, mirrored = runs["single"], runs["mirrored_none"]
    assert (single["summary"]["replicas"], mirrored["summary"]["replicas"]) == (1, 2)
    assert single["summary"]["global_batch_size"] == mirrored["summary"]["global_batch_size"] == 32
    assert mirrored["recipe"]["distribute"]["replicas"] == 2 and single["recipe"]["distribute"] is None
    assert len(mirrored["history"]["loss"]) == 3
    for curve in ("loss", "val_loss", "accuracy"):
        assert max_difference(single["history"][curve], mirrored["history"][curve]) < LOSS_TOLERANCE, curve
    assert max_difference(single["weights"], mirrored["weights"]) < LOSS_TOLERANCE
    assert single["history"]["loss"][0] != single["history"]["loss"][-1], "the model trained"


def test_linear_scaling_doubles_the_global_batch_and_every_learning_rate_with_two_replicas(runs):
    """Batch 16 at lr 0.025 per replica on two replicas is batch 32 at lr 0.05: the single-device training."""
    linear = runs["mirrored_linear"]
    recipe = linear["recipe"]
    assert (recipe["batch_size"], recipe["eval_batch_size"], recipe["schedule"]["lr"]) == (32, 64, 0.05)
    assert recipe["distribute"] | {"devices": None} == {
        "strategy": "mirrored",
        "devices": None,
        "scale": "linear",
        "replicas": 2,
        "learning_rate_factor": 2,
    }
    assert linear["summary"]["global_batch_size"] == 32 and linear["summary"]["replicas"] == 2
    assert linear["history"]["lr"] == pytest.approx([0.05] * 3), "the optimiser ran at the scaled rate"
    assert max_difference(runs["single"]["history"]["loss"], linear["history"]["loss"]) < LOSS_TOLERANCE
    assert max_difference(runs["single"]["weights"], linear["weights"]) < LOSS_TOLERANCE


def test_training_interrupted_under_the_strategy_resumes_like_an_uninterrupted_one(runs):
    """Checkpoint after epoch 2 under two replicas (augmentation on), resume under them: the same curve and weights."""
    whole, resumed = runs["augmented"], runs["resumed"]
    assert resumed["interrupted"]["epochs_done"] == 2
    assert resumed["interrupted"]["loss"] == resumed["history"]["loss"][:2]
    assert resumed["summary"]["resumed_from_epoch"] == 2 and resumed["summary"]["replicas"] == 2
    assert max_difference(whole["history"]["loss"], resumed["history"]["loss"]) < LOSS_TOLERANCE
    assert max_difference(whole["history"]["val_loss"], resumed["history"]["val_loss"]) < LOSS_TOLERANCE
    assert max_difference(whole["weights"], resumed["weights"]) < LOSS_TOLERANCE
    assert max_difference(whole["history"]["loss"], runs["mirrored_none"]["history"]["loss"]) > 1e-3, (
        "augmentation changed the training, so the resume had seed states to restore"
    )


def test_no_distribute_block_leaves_the_recipe_and_training_as_they_were(tmp_path):
    recipe = {**RECIPE, "distribute": None, "epochs": 1}
    resolved = resolve_recipe(recipe, {"augmentation": {}}, {"batch_size": 16})
    assert resolved == deep_merge(deep_merge(recipe, {"augmentation": {}}), {"batch_size": 16})
    assert distribute.distributed_recipe(resolved) is resolved
    assert distribute.strategy_for(None) is None and distribute.replicas(None) == 1
    _, _, summary = fit(new_model(), tiny_data(32, 0), tiny_data(16, 1), 3, resolved, tmp_path / "c", "resnet")
    assert (summary["replicas"], summary["global_batch_size"]) == (1, 16)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"strategy": "multi_worker_mirrored"},
            "distribute.strategy must be mirrored; received 'multi_worker_mirrored'",
        ),
        ({"devices": ["/gpu:0"]}, "distribute.strategy is missing: distribute needs strategy"),
        ({"strategy": "mirrored", "scale": "sqrt"}, "distribute.scale must be linear or none; received 'sqrt'"),
        (
            {"strategy": "mirrored", "gpus": 2},
            r"distribute\.gpus is unknown: distribute takes strategy, devices, scale",
        ),
        ({"strategy": "mirrored", "devices": "/gpu:0"}, "distribute.devices must be null or a list of distinct device"),
        ({"strategy": "mirrored", "devices": []}, r"distribute\.devices must be null .*; received \[\]"),
        ({"strategy": "mirrored", "devices": ["/gpu:0", "/gpu:0"]}, "distinct device names"),
        ("mirrored", "distribute must be null or a mapping such as {strategy: mirrored}; received 'mirrored'"),
    ],
)
def test_a_bad_distribute_block_is_refused_when_the_recipe_is_resolved(block, message):
    with pytest.raises(ValueError, match=message):
        resolve_recipe({**RECIPE, "distribute": block}, None, None)


def test_a_strategy_under_another_keras_backend_is_refused_when_the_recipe_is_resolved(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(
        ValueError, match=r"distribute\.strategy 'mirrored' is TensorFlow's; this run's Keras backend is 'jax'"
    ):
        resolve_recipe({**RECIPE, "distribute": {"strategy": "mirrored"}}, None, None)
    assert resolve_recipe(RECIPE, None, None)["batch_size"] == RECIPE["batch_size"]  # no strategy: no matter


def test_a_recipe_scaled_for_another_number_of_replicas_is_refused():
    scaled = distribute.distributed_recipe({**RECIPE, "distribute": {**ONE_CPU, "scale": "linear"}})
    assert (scaled["batch_size"], scaled["schedule"]["peak_lr"]) == (
        RECIPE["batch_size"],
        RECIPE["schedule"]["peak_lr"],
    )
    assert scaled["distribute"]["replicas"] == 1 and distribute.distributed_recipe(scaled) is scaled
    with pytest.raises(ValueError, match=r"scaled for 2 replicas .* has 1 here"):
        distribute.distributed_recipe({**scaled, "distribute": {**scaled["distribute"], "replicas": 2}})


def test_linear_scaling_reaches_every_schedule_and_the_fine_tuning_phase(monkeypatch):
    monkeypatch.setattr(distribute, "replicas", lambda config: 4)
    recipe = {
        **RECIPE,
        "schedule": {"name": "piecewise", "boundaries": [1], "values": [0.1, 0.01]},
        "fine_tuning": {"epochs": 1, "schedule": {"name": "triangular", "peak_lr": 0.2, "peak_fraction": 0.3}},
        "distribute": {"strategy": "mirrored"},
    }
    scaled = distribute.distributed_recipe(recipe)
    assert scaled["schedule"] == {"name": "piecewise", "boundaries": [1], "values": [0.4, 0.04]}
    assert scaled["fine_tuning"]["schedule"] == {"name": "triangular", "peak_lr": 0.8, "peak_fraction": 0.3}
    assert (scaled["batch_size"], scaled["eval_batch_size"]) == (128, 256)
    assert recipe["schedule"]["values"] == [0.1, 0.01], "the recipe given is not changed"
    none = distribute.distributed_recipe({**recipe, "distribute": {"strategy": "mirrored", "scale": "none"}})
    assert (none["batch_size"], none["schedule"]["values"], none["distribute"]["learning_rate_factor"]) == (
        32,
        [0.1, 0.01],
        1,
    )


def test_one_strategy_per_configuration_builds_the_model_and_fit_refuses_another_models(tmp_path):
    strategy = distribute.strategy_for(ONE_CPU)
    assert distribute.strategy_for({**ONE_CPU, "scale": "none"}) is strategy
    assert distribute.strategy_for({"strategy": "mirrored"}) is not strategy
    images, labels = tiny_data(32, 0)
    recipe = resolve_recipe({**RECIPE, "model": {"units": 8, "hidden_layers": 1}, "distribute": ONE_CPU}, None, None)
    model = build_model(images, np.arange(32), ["a", "b", "c"], {"mean": [0.0] * 3, "std": [1.0] * 3}, recipe, "mlp")
    assert all(strategy.extended.variable_created_in_scope(variable.value) for variable in model.variables)
    with pytest.raises(ValueError, match="was not built under the recipe's strategy"):
        fit(new_model(), (images, labels), tiny_data(16, 1), 3, recipe, tmp_path / "c", "mlp")
    with pytest.raises(ValueError, match=r"built under a tf\.distribute strategy, but the recipe has distribute: null"):
        fit(model, (images, labels), tiny_data(16, 1), 3, {**recipe, "distribute": None}, tmp_path / "c", "mlp")
    keras.backend.clear_session()


def test_every_recipe_trains_on_one_device_unless_it_asks_for_a_strategy():
    parameters = yaml.safe_load((PROJECT / "conf/base/parameters_training.yml").read_text())
    assert parameters["_common"]["distribute"] is None
    training = recipes(parameters)
    assert training and {
        name: recipe.get("distribute", "missing") for name, recipe in training.items()
    } == dict.fromkeys(training)
