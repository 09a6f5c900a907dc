"""Training on crowd-label targets: soft distributions, per-batch one-hot draws, the multi-target loss."""

import keras
import numpy as np
import pytest
from test_fit import RECIPE, new_model, tiny_data

from convbench.training.fit import fit
from convbench.training.input_pipeline import evaluation_dataset, training_dataset
from convbench.training.losses import (
    MultiTargetAccuracy,
    MultiTargetCrossentropy,
    draws_targets,
    training_accuracy,
    training_loss,
)


def test_target_distributions_are_batched_as_they_are():
    images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)
    targets = np.random.default_rng(0).dirichlet(np.ones(4), size=12).astype(np.float32)
    for dataset in (training_dataset(images, targets, 4, 5, seed=1), evaluation_dataset(images, targets, 4, 5)):
        for batch_images, batch_targets in dataset:
            np.testing.assert_array_equal(batch_targets.numpy(), targets[batch_images.numpy()[:, 0, 0, 0]])


def test_probability_mode_draws_a_one_hot_from_each_distribution_anew_every_batch():
    count = 4000
    images = np.arange(count).astype(np.uint16).view(np.uint8).reshape(count, 1, 2, 1)  # each image its id
    targets = np.tile(np.array([[0.5, 0.25, 0.25, 0.0]], np.float32), (count, 1))
    targets[0] = [0, 0, 0, 1]
    dataset = training_dataset(images, targets, 4, 1000, seed=3, sample_targets=True)
    epochs = []
    for _ in range(2):
        drawn = np.zeros((count, 4), np.float32)
        for batch_images, batch_targets in dataset:
            ids = batch_images.numpy().reshape(-1, 2).view(np.uint16)[:, 0]
            drawn[ids] = batch_targets.numpy()
        epochs.append(drawn)
        np.testing.assert_array_equal(drawn.sum(axis=1), 1.0)
        assert drawn[0, 3] == 1.0, "a class with all the probability is always drawn"
        np.testing.assert_allclose(drawn[1:].mean(axis=0), [0.5, 0.25, 0.25, 0.0], atol=0.03)
    assert (epochs[0] != epochs[1]).any(axis=1).mean() > 0.4, "targets are drawn again each epoch"
    # Evaluation never draws.
    (_, first_targets), *_ = evaluation_dataset(images, targets, 4, 1000)
    np.testing.assert_array_equal(first_targets.numpy(), targets[:1000])


def test_multi_target_loss_is_minus_log_of_the_best_accepted_class():
    targets = np.array([[0.999, 0.001, 0.999, 0.001], [0.001, 0.001, 0.001, 0.999]], np.float32)
    predictions = np.array([[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]], np.float32)
    loss = MultiTargetCrossentropy(reduction=None)(targets, predictions)
    expected = [-np.log(0.999 * 0.3), -np.log(0.999 * 0.25)]
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5)
    # Either accepted class may carry the probability: both give the same loss.
    swapped = np.array([[0.3, 0.6, 0.1, 0.0]], np.float32)
    np.testing.assert_allclose(
        np.asarray(MultiTargetCrossentropy(reduction=None)(targets[:1], swapped)), expected[:1], rtol=1e-5
    )
    restored = keras.losses.deserialize(keras.losses.serialize(MultiTargetCrossentropy()))
    assert isinstance(restored, MultiTargetCrossentropy)


def test_the_recipe_label_mode_picks_the_loss_and_the_draws():
    assert isinstance(training_loss({"label_mode": "multi_target"}), MultiTargetCrossentropy)
    smoothed = training_loss({"label_smoothing": 0.1})
    assert (
        isinstance(smoothed, keras.losses.CategoricalCrossentropy) and smoothed.get_config()["label_smoothing"] == 0.1
    )
    assert draws_targets({"label_mode": "probability"}) and not draws_targets({"label_mode": "crossentropy"})
    assert not draws_targets({})


@pytest.mark.parametrize("mode", ["crossentropy", "probability", "multi_target"])
def test_fit_learns_from_crowd_targets_and_validates_against_majority_labels(tmp_path, mode):
    images, labels = tiny_data(96, 0)
    distributions = np.full((96, 3), 0.1, np.float32)
    distributions[np.arange(96), labels] = 0.8
    if mode == "multi_target":
        distributions = np.where(distributions > 0.5, 0.999, 0.001).astype(np.float32)
    val_images, val_labels = tiny_data(32, 1)
    val_targets = np.eye(3, dtype=np.float32)[val_labels]
    recipe = {**RECIPE, "label_mode": mode, "label_smoothing": 0.0, "epochs": 4}
    model, history, _ = fit(
        new_model(), (images, distributions), (val_images, val_targets), 3, recipe, tmp_path, "vgg13"
    )
    assert history["loss"][-1] < history["loss"][0], history["loss"]
    predicted = model.predict(val_images, verbose=0).argmax(axis=1)
    assert history["val_accuracy"][-1] == pytest.approx((predicted == val_labels).mean())


def test_multi_target_accuracy_accepts_any_accepted_class_and_is_plain_accuracy_on_one_hot_targets():
    targets = np.array([[0.001, 0.999, 0.999], [0.001, 0.999, 0.999], [0.999, 0.001, 0.001]], np.float32)
    predictions = np.array(
        [[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1]], np.float32
    )  # second accepted / wrong / right
    metric = MultiTargetAccuracy()
    metric.update_state(targets, predictions)
    assert float(metric.result()) == pytest.approx(2 / 3)
    categorical = keras.metrics.CategoricalAccuracy()
    categorical.update_state(targets, predictions)
    assert float(categorical.result()) == pytest.approx(1 / 3), "argmax of a tie picks the first accepted class"
    one_hot = np.eye(3, dtype=np.float32)[[2, 1, 0]]
    metric.reset_state()
    metric.update_state(one_hot, predictions)
    assert float(metric.result()) == pytest.approx(2 / 3)
    assert isinstance(training_accuracy({"label_mode": "multi_target"}), MultiTargetAccuracy)
    assert isinstance(training_accuracy({"label_mode": "probability"}), keras.metrics.CategoricalAccuracy)
    restored = keras.metrics.deserialize(keras.metrics.serialize(MultiTargetAccuracy()))
    assert isinstance(restored, MultiTargetAccuracy) and restored.name == "accuracy"
