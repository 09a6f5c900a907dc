import keras
import numpy as np
import pytest

from convbench.training.optimizers import learning_rate_schedule, make_optimizer


def lr_at(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cosine_warms_up_linearly_then_decays_to_zero():
    schedule = learning_rate_schedule(
        {"name": "cosine", "peak_lr": 0.1, "warmup_epochs": 1}, epochs=5, steps_per_epoch=10
    )
    assert lr_at(schedule, 0) == pytest.approx(0.0)
    assert lr_at(schedule, 5) == pytest.approx(0.05, rel=1e-5)
    assert lr_at(schedule, 10) == pytest.approx(0.1, rel=1e-5)
    assert lr_at(schedule, 30) == pytest.approx(0.05, rel=1e-4)  # halfway through the decay
    assert lr_at(schedule, 50) == pytest.approx(0.0, abs=1e-7)


def test_piecewise_boundaries_are_given_in_epochs():
    schedule = learning_rate_schedule(
        {"name": "piecewise", "boundaries": [2, 3], "values": [0.1, 0.01, 0.001]}, epochs=4, steps_per_epoch=100
    )
    assert [lr_at(schedule, s) for s in (0, 200, 201, 301)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_unknown_schedule_and_optimizer_are_refused_with_their_names():
    with pytest.raises(ValueError, match="onecycle"):
        learning_rate_schedule({"name": "onecycle"}, epochs=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match="lion"):
        make_optimizer({"name": "lion"}, 0.1)


def test_sgd_gets_momentum_and_nesterov_from_the_recipe():
    optimizer = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.1)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9 and optimizer.nesterov
    assert np.isclose(float(optimizer.learning_rate), 0.1)
