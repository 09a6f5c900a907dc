import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from tiny_training import RECIPE, new_model, tiny_data

from convbench.models.preprocessing import with_normalization
from convbench.training import callbacks as callbacks_module
from convbench.training.fit import fit


def test_fit_returns_history_summary_and_logs_every_epoch_to_mlflow(tmp_path, mlflow_run):
    model, history, summary = fit(
        new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, tmp_path / "ckpt", metric_prefix="resnet"
    )
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert summary["epochs"] == 3 and summary["resumed_from_epoch"] == 0
    assert summary["train_images_per_s"] > 0
    assert summary["total_parameters"] == model.count_params() > summary["parameters"]
    assert all(layer.name != "random_pad_crop" for layer in model.layers), "returned model has no augmentation"
    client = mlflow.MlflowClient()
    steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "resnet.val_accuracy")]
    assert steps == [1, 2, 3]
    assert {"resnet.loss", "resnet.accuracy", "resnet.val_loss", "resnet.lr"} <= set(
        client.get_run(mlflow_run.info.run_id).data.metrics
    )
    state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert state["epochs_done"] == 3 and [p.name for p in (tmp_path / "ckpt").glob("*.keras")] == ["epoch-0003.keras"]


@pytest.mark.backends
def test_a_finished_checkpoint_is_not_trained_again(tmp_path, monkeypatch):
    """A run that failed after training (e.g. while saving) reruns without training again."""
    trained, *_ = fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, tmp_path / "ckpt", "resnet")

    epochs_left = []
    keras_fit = keras.Model.fit

    def counting_fit(self, *args, **kwargs):
        epochs_left.append(kwargs["epochs"] - kwargs["initial_epoch"])
        return keras_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counting_fit)
    model, history, summary = fit(
        new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, tmp_path / "ckpt", "resnet"
    )
    assert epochs_left == []  # resumed after its last epoch: nothing left to train
    assert summary["resumed_from_epoch"] == 3 and len(history["loss"]) == 3
    for restored, original in zip(model.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(restored, original)


def seeded_model():
    keras.utils.set_random_seed(0)
    return new_model()


@pytest.mark.backends
def test_interrupted_training_resumes_from_the_last_epoch_bit_identically(tmp_path, monkeypatch, mlflow_run):
    uninterrupted, uninterrupted_history, _ = fit(
        seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, tmp_path / "whole", "resnet"
    )
    checkpoint = tmp_path / "ckpt"
    original = callbacks_module.ResumableCheckpoint.on_epoch_end

    def interrupt_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt("simulated Ctrl-C")

    monkeypatch.setattr(callbacks_module.ResumableCheckpoint, "on_epoch_end", interrupt_after_second_epoch)
    with mlflow.start_run(nested=True) as interrupted_run:  # one run for the interrupted fit and its resume,
        with pytest.raises(KeyboardInterrupt):  # as when a lost Dask worker's training resumes on another
            fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
        state = json.loads((checkpoint / "state.json").read_text())
        assert state["epochs_done"] == 2 and len(state["history"]["loss"]) == 2
        assert state["seed_generators"], "the augmentation layers' seed states are kept"
        logged = mlflow.MlflowClient().get_metric_history(interrupted_run.info.run_id, "resnet.loss")
        assert [m.step for m in logged] == [1], "epoch 2 was checkpointed, then stopped before its MLflow logging"

        monkeypatch.setattr(callbacks_module.ResumableCheckpoint, "on_epoch_end", original)
        resumed, history, summary = fit(
            seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet"
        )
    assert summary["resumed_from_epoch"] == 2
    assert len(history["loss"]) == 3
    assert history["loss"][:2] == state["history"]["loss"]
    logged = mlflow.MlflowClient().get_metric_history(interrupted_run.info.run_id, "resnet.loss")
    assert sorted(m.step for m in logged) == [1, 2, 3], "the resume logs the checkpointed epoch 2 it lacked, and 3"
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(history["loss"])
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(mlflow_run.info.run_id, "resnet.loss")]
    assert steps == [1, 2, 3], "the uninterrupted fit's run"
    # Same batches (epoch-keyed order), same augmentations (seed states restored), same optimizer state.
    assert history["loss"] == uninterrupted_history["loss"]
    for after_resume, whole in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_array_equal(after_resume, whole)


def test_epoch_order_depends_on_the_seed_and_epoch_only():
    from convbench.training.input_pipeline import training_dataset

    images, labels = tiny_data(10, 0)

    def order(epochs):
        return [
            int(label)
            for _, targets in training_dataset(images, labels, 3, 4, seed=1, epochs=epochs)
            for label in np.argmax(targets, axis=1)
        ]

    whole = order(range(0, 3))
    assert order(range(2, 3)) == whole[20:] and order(range(1, 2)) == whole[10:20]
    assert whole[:10] != whole[10:20] or whole[10:20] != whole[20:], "epochs are shuffled anew"


@pytest.mark.parametrize("change", ["recipe", "data"])
def test_checkpoint_of_another_recipe_or_other_data_is_not_resumed(tmp_path, monkeypatch, change):
    checkpoint = tmp_path / "ckpt"
    original = callbacks_module.ResumableCheckpoint.on_epoch_end

    def interrupt(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks_module.ResumableCheckpoint, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
    monkeypatch.setattr(callbacks_module.ResumableCheckpoint, "on_epoch_end", original)
    recipe = {**RECIPE, "epochs": 2} if change == "recipe" else RECIPE
    train = tiny_data(96, 5) if change == "data" else tiny_data(96, 0)
    _, history, summary = fit(new_model(), train, tiny_data(32, 1), 3, recipe, checkpoint, "resnet")
    assert summary["resumed_from_epoch"] == 0 and len(history["loss"]) == recipe["epochs"]


def test_training_learns_an_easy_signal(tmp_path):
    recipe = {**RECIPE, "epochs": 6, "augmentation": {}, "label_smoothing": 0.0}
    model, history, _ = fit(new_model(), tiny_data(192, 0), tiny_data(64, 1), 3, recipe, tmp_path / "c", "resnet")
    assert history["loss"][-1] < history["loss"][0]
    images, labels = tiny_data(64, 2)
    assert (model.predict(images, verbose=0).argmax(axis=1) == labels).mean() > 0.6


def test_early_stopping_ends_training_and_a_rerun_does_not_train_again(tmp_path, mlflow_run):
    # The logged learning rate is constant, so with patience 1 early stopping ends the second epoch.
    recipe = {
        **RECIPE,
        "epochs": 6,
        "schedule": {"name": "constant", "lr": 0.01},
        "early_stopping": {"monitor": "lr", "mode": "min", "patience": 1},
    }
    _, history, summary = fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")
    assert len(history["loss"]) == summary["epochs"] == 2 and summary["stopped_early"]
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["stopped_early"] is True
    _, history, summary = fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")
    assert summary["epochs"] == 2 and summary["resumed_from_epoch"] == 2


def test_early_stopping_counts_the_epochs_before_a_resume():
    from convbench.training.callbacks import early_stopping

    (stopper,) = early_stopping({"monitor": "val_loss", "patience": 3}, {"val_loss": [1.0, 0.5, 0.6, 0.7]})
    stopper.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.5, 1, 2)
    assert early_stopping(None, {}) == []


@pytest.mark.parametrize(
    ("monitor", "mode", "min_delta", "values"),
    [
        ("val_loss", "auto", 0.0, [1.0, 0.5, 0.6, 0.5, 0.4, 0.45]),
        ("val_accuracy", "auto", 0.0, [0.5, 0.7, 0.7, 0.6, 0.8, 0.75]),
        ("val_loss", "min", 0.05, [1.0, 0.97, 0.9, 0.88, 0.8, 0.8]),
        ("val_accuracy", "max", 0.05, [0.5, 0.52, 0.6, 0.62, 0.7, 0.7]),
    ],
)
def test_early_stopping_replays_the_history_as_keras_judges_the_epochs_it_trains(monitor, mode, min_delta, values):
    from convbench.training.callbacks import early_stopping

    options = {"monitor": monitor, "mode": mode, "min_delta": min_delta, "patience": 100}
    (replayed,) = early_stopping(options, {monitor: values})
    replayed.on_train_begin()
    live = keras.callbacks.EarlyStopping(**{**options, "mode": "min" if monitor.endswith("loss") else "max"})
    live.on_train_begin()
    for epoch, value in enumerate(values):
        live.on_epoch_end(epoch, {monitor: value})
    assert (replayed.best, replayed.best_epoch, replayed.wait) == (live.best, live.best_epoch, live.wait)


def test_early_stopping_asks_for_the_direction_of_a_metric_that_is_neither_a_loss_nor_an_accuracy():
    from convbench.training.callbacks import early_stopping

    with pytest.raises(ValueError, match=r"mode: min or mode: max\. Received: monitor='lr'"):
        early_stopping({"monitor": "lr", "patience": 1}, {})


def model_with_pretrained_base():
    import keras

    inputs = keras.Input((16, 16, 3))
    base_input = keras.Input((16, 16, 3))
    base_output = keras.layers.BatchNormalization(name="base_bn")(
        keras.layers.Conv2D(4, 3, name="base_conv")(base_input)
    )
    base = keras.Model(base_input, base_output, name="pretrained_base")
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    backbone = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x), name="transfer")
    return with_normalization(backbone, [128.0] * 3, [64.0] * 3, name="transfer")


def test_fine_tuning_recipe_trains_the_head_on_a_frozen_base_then_the_whole_network(tmp_path, mlflow_run):
    recipe = {
        **RECIPE,
        "epochs": 2,
        "optimizer": {"name": "adam"},
        "schedule": {"name": "constant", "lr": 1e-2},
        "augmentation": {},
        "fine_tuning": {"epochs": 1, "schedule": {"name": "constant", "lr": 1e-3}},
    }
    model = model_with_pretrained_base()
    base = model.get_layer("transfer").get_layer("pretrained_base")
    base_before = [w.copy() for w in base.get_weights()]
    head_before = model.get_layer("transfer").get_layer("head").get_weights()[0].copy()

    phases = __import__("convbench.training.fit", fromlist=["training_phases"]).training_phases(recipe)
    assert [(p.name, p.pretrained_base_trainable, p.first_epoch, p.recipe["epochs"]) for p in phases] == [
        ("head", False, 0, 2),
        ("fine_tuning", True, 2, 1),
    ]
    assert phases[1].recipe["schedule"]["lr"] == 1e-3 and phases[1].recipe["optimizer"] == {"name": "adam"}

    trained, history, summary = fit(model, tiny_data(64, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "tl")
    assert len(history["loss"]) == summary["epochs"] == 3 and not summary["stopped_early"]
    assert history["lr"] == pytest.approx([1e-2, 1e-2, 1e-3])
    trained_base = trained.get_layer("transfer").get_layer("pretrained_base")
    assert trained_base.trainable and not trained_base.get_layer("base_bn").trainable
    assert summary["parameters"] == trained.count_params() - 4 * 4  # all but the base's BN (gamma, beta, mean, var)
    for after, before in zip(trained_base.get_layer("base_bn").get_weights(), base_before[2:]):
        np.testing.assert_array_equal(after, before)  # scale, offset and statistics: as pretrained
    assert not np.allclose(trained.get_layer("transfer").get_layer("head").get_weights()[0], head_before)
    assert any(
        not np.allclose(after, before)
        for after, before in zip(trained.get_layer("transfer").get_layer("pretrained_base").get_weights(), base_before)
    )
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(mlflow_run.info.run_id, "tl.loss")]
    assert steps == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["fine_tuning", "head"]


def test_frozen_phase_leaves_the_pretrained_base_untouched(tmp_path):
    recipe = {
        **RECIPE,
        "epochs": 1,
        "optimizer": {"name": "adam"},
        "schedule": {"name": "constant", "lr": 1e-2},
        "augmentation": {},
    }
    from convbench.training.fit import set_pretrained_base_trainable

    model = model_with_pretrained_base()
    base_before = [w.copy() for w in model.get_layer("transfer").get_layer("pretrained_base").get_weights()]
    set_pretrained_base_trainable(model, False)
    trained, _, summary = fit(model, tiny_data(64, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "tl")
    for after, before in zip(trained.get_layer("transfer").get_layer("pretrained_base").get_weights(), base_before):
        np.testing.assert_array_equal(after, before)
    assert summary["parameters"] == 4 * 3 + 3  # the head only


def test_fine_tuning_needs_a_pretrained_base(tmp_path):
    recipe = {**RECIPE, "fine_tuning": {"epochs": 1}}
    with pytest.raises(ValueError, match="pretrained_base"):
        fit(new_model(), tiny_data(64, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")


def test_the_epoch_logger_refuses_a_prefix_whose_keys_would_not_parse_back():
    with pytest.raises(ValueError, match="non-empty architecture name"):
        callbacks_module.MlflowEpochLogger("cifar10.resnet")


@pytest.mark.parametrize("damage", ["truncated_model", "garbled_state", "other_keras"])
def test_a_damaged_checkpoint_stops_with_the_file_and_the_fix(tmp_path, damage):
    from convbench.training.callbacks import CheckpointError

    checkpoint = tmp_path / "ckpt"
    recipe = {**RECIPE, "epochs": 1}
    fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, checkpoint, "resnet")
    state_path = checkpoint / "state.json"
    state = json.loads(state_path.read_text())
    damaged = {
        "truncated_model": checkpoint / state["model"],
        "garbled_state": state_path,
        "other_keras": checkpoint / state["model"],
    }[damage]
    if damage == "truncated_model":
        damaged.write_bytes(damaged.read_bytes()[:1000])
    elif damage == "garbled_state":
        state_path.write_text(state_path.read_text()[:-7])
    else:
        state_path.write_text(json.dumps({**state, "keras_version": "2.15.0"}))
    with pytest.raises(CheckpointError) as error:
        fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, checkpoint, "resnet")
    assert str(damaged) in str(error.value) and f"Delete {checkpoint}" in str(error.value)
    assert damaged.exists(), "nothing is deleted for the user"


@pytest.mark.backends
def test_sigterm_saves_mid_epoch_and_the_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    import os
    import signal

    from convbench.training.callbacks import EpochTimer, TrainingInterrupted

    uninterrupted, whole_history, _ = fit(
        seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, tmp_path / "w", "resnet"
    )
    previous_handler = signal.getsignal(signal.SIGTERM)

    def sigterm_in_the_second_epoch(self, batch, logs=None):
        if self.params and getattr(self, "_epoch", None) == 1 and batch == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    def remember_epoch(self, epoch, logs=None):
        self._epoch = epoch
        self._start = __import__("time").perf_counter()
        self._train_end = None

    monkeypatch.setattr(EpochTimer, "on_epoch_begin", remember_epoch)
    monkeypatch.setattr(EpochTimer, "on_train_batch_end", sigterm_in_the_second_epoch, raising=False)
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted, match="SIGTERM received") as interrupted:
        fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
    assert (interrupted.value.epochs_done, interrupted.value.steps_into_epoch) == (1, 1)
    assert signal.getsignal(signal.SIGTERM) is previous_handler, "the handler is put back"
    state = json.loads((checkpoint / "state.json").read_text())
    assert (state["epochs_done"], state["steps_into_epoch"], state["model"]) == (1, 1, "epoch-0001-step-000001.keras")

    monkeypatch.undo()
    resumed, history, summary = fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
    assert summary["resumed_from_epoch"] == 1 and len(history["loss"]) == 3
    assert history["loss"][0] == whole_history["loss"][0] and history["loss"][2] == whole_history["loss"][2]
    # Epoch 2's logged training loss averages only the batches after the resume; the weights are the same.
    for after_resume, whole in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_array_equal(after_resume, whole)


def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from convbench.atomic import DiskFullError

    checkpoint = tmp_path / "ckpt"
    real_save = keras.Model.save

    def disk_fills_at_epoch_two(self, path, *args, **kwargs):
        if "epoch-0002" not in str(path):
            return real_save(self, path, *args, **kwargs)
        Path(path).write_bytes(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", disk_fills_at_epoch_two)
    with pytest.raises(DiskFullError) as full:
        fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
    assert str(checkpoint / "epoch-0002.keras") in str(full.value) and "bytes" in str(full.value)
    assert not list(checkpoint.glob(".*partial*")), "the half-written model is removed"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["epochs_done"] == 1 and (checkpoint / state["model"]).exists()

    monkeypatch.setattr(keras.Model, "save", real_save)  # space freed
    _, history, summary = fit(new_model(), tiny_data(96, 0), tiny_data(32, 1), 3, RECIPE, checkpoint, "resnet")
    assert summary["resumed_from_epoch"] == 1 and len(history["loss"]) == 3


class SigtermAt(keras.callbacks.Callback):
    """Sends this process SIGTERM after batch `batch` of epoch `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch) == (self.epoch, self.batch):
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.backends
def test_lookahead_resumed_mid_epoch_goes_on_with_its_step_count(tmp_path):
    """The lookahead's alpha depends on the step: a resumed run that counted from 0 again would drift away."""
    from convbench.training.callbacks import TrainingInterrupted

    recipe = {**RECIPE, "lookahead": {"every": 1, "decay": 0.9, "power": 1.0}}  # every step: weights = average
    uninterrupted, whole_history, _ = fit(
        seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, tmp_path / "w", "resnet"
    )
    checkpoint = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted):
        fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, checkpoint, "resnet", [SigtermAt(1, 0)])
    resumed, history, summary = fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, checkpoint, "resnet")
    assert summary["resumed_from_epoch"] == 1 and history["loss"][2] == whole_history["loss"][2]
    for after_resume, whole in zip(resumed.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_array_equal(after_resume, whole)


def test_alternating_flips_go_to_the_input_pipeline_not_to_the_model(tmp_path, monkeypatch):
    import convbench.training.fit as fit_module

    asked, real = [], fit_module.training_dataset

    def spy(*args, **kwargs):
        asked.append(kwargs["alternating_flips"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "training_dataset", spy)
    recipe = {**RECIPE, "epochs": 1, "augmentation": {"pad_crop": 2, "horizontal_flip": "alternating"}}
    fit(seeded_model(), tiny_data(96, 0), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "resnet")
    assert asked == [True]
