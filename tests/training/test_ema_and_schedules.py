import keras
import numpy as np
import pytest

from convbench.training.callbacks import Lookahead, lookahead
from convbench.training.optimizers import learning_rate_schedule, make_optimizer


def test_ema_weights_equal_the_closed_form_average_of_the_trajectory():
    """One weight w, loss = g * w (constant gradient g): plain SGD gives w_t = w_0 - t * lr * g.

    Keras' EMA starts at the weight after the first step and then averages
    a_t = d * a_(t-1) + (1 - d) * w_t; at the end of `fit` the weight is replaced by a_T.
    """
    lr, g, d, steps, w0 = 0.1, 2.0, 0.8, 5, 1.0
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=make_optimizer({"name": "sgd"}, lr, ema={"decay": d}), loss=lambda y, p: g * p[:, 0])
    model.fit(np.ones((steps, 1), np.float32), np.zeros((steps, 1), np.float32), batch_size=1, epochs=1, verbose=0)
    trajectory = [w0 - t * lr * g for t in range(1, steps + 1)]
    average = trajectory[0]
    for weight in trajectory[1:]:
        average = d * average + (1 - d) * weight
    assert model.get_weights()[0].item() == pytest.approx(average, rel=1e-5)
    assert average != pytest.approx(trajectory[-1])  # the averaged weight is not the last one


def test_an_ema_decay_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"ema\.decay must be a number in \(0, 1\); received 1\.0"):
        make_optimizer({"name": "sgd"}, 0.1, ema={"decay": 1.0})


def test_the_triangular_schedule_rises_to_its_peak_and_ends_at_its_final_value_on_the_last_step():
    schedule = learning_rate_schedule(
        {"name": "triangular", "peak_lr": 2.0, "start_fraction": 0.2, "peak_fraction": 0.25, "final_lr_fraction": 0.05},
        epochs=10,
        steps_per_epoch=10,
    )
    rates = [float(schedule(step)) for step in range(100)]
    assert rates[0] == pytest.approx(0.4) and rates[25] == pytest.approx(2.0)
    assert rates[99] == pytest.approx(0.1)  # the last step of training
    assert np.all(np.diff(rates[:26]) > 0) and np.all(np.diff(rates[25:]) < 0)
    restored = type(schedule).from_config(schedule.get_config())
    assert float(restored(60)) == pytest.approx(rates[60])


@pytest.mark.backends
def test_lookahead_pulls_the_weights_to_the_closed_form_average_every_k_steps():
    """A one-weight model trained by a constant gradient: the lookahead trajectory by hand."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=lambda y, p: keras.ops.mean(p))  # d loss / d w = x = 1
    steps, every, decay, power = 12, 3, 0.6, 1.0
    callback = Lookahead(steps, every=every, decay=decay, power=power)
    model.fit(
        np.ones((steps, 1)),
        np.zeros((steps, 1)),
        batch_size=1,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    weight = average = 0.0
    for step in range(1, steps + 1):
        weight -= 0.1
        if step % every == 0:
            alpha = decay * (step / steps) ** power
            average = alpha * average + (1 - alpha) * weight
            weight = average
    assert float(model.layers[0].kernel.numpy()[0, 0]) == pytest.approx(average, rel=1e-5)
    assert average != pytest.approx(-0.1 * steps)  # the averaging did something
    assert lookahead(None, steps) == []
    with pytest.raises(ValueError, match="lookahead"):
        lookahead({"every": 5, "rate": 0.5}, steps)
    with pytest.raises(ValueError, match="decay"):
        Lookahead(steps, decay=1.5)


def one_weight_model() -> keras.Model:
    """One weight w (from 0), loss = mean(prediction): with inputs of 1, SGD at 0.1 moves w by -0.1 a step."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=lambda y, p: keras.ops.mean(p))
    return model


@pytest.mark.backends
def test_lookahead_counts_on_from_the_steps_a_resumed_run_has_done():
    """Steps 7 to 12 of 12, as after a resume from step 6: the pulls at 9 and 12 take those steps' alphas."""
    steps, every, decay, power, done = 12, 3, 0.6, 1.0, 6
    model = one_weight_model()
    callback = Lookahead(steps, every=every, decay=decay, power=power, steps_done=done)
    model.fit(np.ones((3, 1)), np.zeros((3, 1)), batch_size=1, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
    weight = average = 0.0  # the average starts at the weights the fit starts from
    for step in range(done + 1, steps + 1):
        weight -= 0.1
        if step % every == 0:
            alpha = decay * (step / steps) ** power
            average = alpha * average + (1 - alpha) * weight
            weight = average
    assert callback.steps_done == steps
    assert float(model.layers[0].kernel.numpy()[0, 0]) == pytest.approx(average, rel=1e-5)
    with pytest.raises(ValueError, match="steps_done"):
        Lookahead(steps, steps_done=-1)


def test_lookahead_copies_nothing_to_the_host_after_a_batch(monkeypatch):
    """Every way a value leaves the device (NumPy conversion, `get_weights`, a Python number or bool of a
    tensor or variable) fails inside `Lookahead.on_train_batch_end`; the averaging still happens."""
    import tensorflow as tf

    inside_batch_end = []
    eager_tensor_base = next(base for base in type(tf.constant(0.0)).__mro__ if base.__name__ == "_EagerTensorBase")
    seams = [
        (keras.ops, "convert_to_numpy"),
        (keras.Model, "get_weights"),
        *((keras.Variable, name) for name in ("numpy", "__array__", "__float__", "__int__", "__bool__")),
        *(
            (eager_tensor_base, name)
            for name in ("numpy", "__array__", "__float__", "__int__", "__bool__", "__index__")
        ),
    ]
    for owner, name in seams:
        original = getattr(owner, name)

        def guarded(*args, _original=original, _name=name, **kwargs):
            if inside_batch_end:
                raise AssertionError(f"Lookahead's per-batch path calls {_name}: a copy to the host")
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, guarded)

    batch_end = Lookahead.on_train_batch_end

    def watched(self, batch, logs=None):
        inside_batch_end.append(batch)
        try:
            batch_end(self, batch, logs)
        finally:
            inside_batch_end.pop()

    monkeypatch.setattr(Lookahead, "on_train_batch_end", watched)
    model = one_weight_model()
    callback = Lookahead(6, every=2, decay=0.5, power=1.0)
    model.fit(np.ones((6, 1)), np.zeros((6, 1)), batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    monkeypatch.undo()
    assert callback.steps_done == 6
    assert float(model.layers[0].kernel.numpy()[0, 0]) != pytest.approx(-0.6)  # the pulls ran
