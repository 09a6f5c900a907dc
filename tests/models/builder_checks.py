"""Checks every architecture builder must pass: shapes, softmax outputs, parameter counts, learning.

A builder is `build_<name>(input_shape, num_classes, **hyperparameters) -> keras.Model` taking
float images (the z-score is added around it by `with_normalization`) and returning class
probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import numpy as np

from convbench.training.fit import trainable_parameters

__all__ = [
    "INPUT_SHAPES",
    "all_layers",
    "assert_one_step_lowers_the_loss",
    "assert_probabilities_for",
    "assert_saves_and_loads",
    "trainable_parameters",
]

INPUT_SHAPES = ((32, 32, 3), (28, 28, 1), (48, 48, 1))
"""CIFAR, MNIST and FER2013: every builder must accept all three."""


def assert_probabilities_for(
    builder: Callable[..., keras.Model], input_shape: tuple[int, int, int], num_classes: int = 7, **hp
) -> keras.Model:
    """The built model maps a batch of `input_shape` images to one distribution over `num_classes` each."""
    model = builder(input_shape, num_classes, **hp)
    images = np.random.default_rng(0).normal(size=(2, *input_shape)).astype("float32")
    probabilities = np.asarray(model(images, training=False))
    assert probabilities.shape == (2, num_classes), f"{model.name} on {input_shape}: {probabilities.shape}"
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    return model


def all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of `model`, those of its nested models (e.g. a pretrained base) included, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def _seed_generators(model: keras.Model) -> list:
    """The random-state generators of the model's layers (dropout masks and the like)."""
    return [layer.seed_generator for layer in all_layers(model) if getattr(layer, "seed_generator", None)]


def _training_mode_loss(model: keras.Model, images: np.ndarray, onehot: np.ndarray, passes: int = 3) -> float:
    """Cross-entropy in training mode (batch statistics, dropout on), averaged over a few passes.

    The dropout masks are the same at every call: the layers' random state is rewound first.
    """
    generators = _seed_generators(model)
    start = [np.asarray(generator.state.value) for generator in generators]
    loss = keras.losses.CategoricalCrossentropy()
    values = [float(loss(onehot, model(images, training=True))) for _ in range(passes)]
    for generator, state in zip(generators, start):
        generator.state.assign(state)
    return float(np.mean(values))


def assert_one_step_lowers_the_loss(
    builder: Callable[..., keras.Model],
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 4,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    **hp,
) -> tuple[float, float]:
    """One Adam step on a tiny random batch lowers the training loss on that batch.

    Seeded before the model is built, so dropout masks and weights are the same on every run.
    Returns the loss before and after the step.
    """
    keras.utils.set_random_seed(0)
    model = builder(input_shape, num_classes, **hp)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    onehot = keras.utils.to_categorical(rng.integers(0, num_classes, batch_size), num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy", run_eagerly=True)
    generators = _seed_generators(model)
    masks = [np.asarray(generator.state.value) for generator in generators]
    before = _training_mode_loss(model, images, onehot)
    model.train_on_batch(images, onehot)
    for generator, state in zip(generators, masks):
        generator.state.assign(state)  # the same dropout masks as before the step
    after = _training_mode_loss(model, images, onehot)
    assert after < before, f"{model.name}: loss {before:.4f} -> {after:.4f} after one step"
    return before, after


def assert_saves_and_loads(model: keras.Model, folder) -> keras.Model:
    """The model survives a `.keras` round trip (as the catalog and MLflow store it) with the same outputs."""
    path = folder / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(1).normal(size=(2, *model.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), rtol=1e-4, atol=1e-6)
    return loaded
