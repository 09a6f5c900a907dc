import keras
import numpy as np
import pytest
import tensorflow as tf
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.airbench import (
    WHITENING_LAYER,
    ScaledBias,
    build_airbench,
    init_whitening,
    patch_vectors,
    whitening_filters,
)
from convbench.models.registry import data_init
from convbench.pipelines.training.nodes import build_model

SMALL = {"widths": (8, 16, 16)}


def expected_trainable(channels: int, num_classes: int, widths=(64, 256, 256)) -> int:
    """By hand: the whitening bias, 3x3 conv kernels (no bias), one BN shift per channel (scale fixed), the bias-free head."""
    previous = 8 * channels  # the whitening layer's 2 x (2*2*C) outputs
    total = previous
    for width in widths:
        total += 9 * previous * width + 9 * width * width + 2 * width
        previous = width
    return total + previous * num_classes


def test_parameter_count_is_about_2_million_and_the_whitening_layer_is_frozen():
    model = build_airbench((32, 32, 3), 10)
    assert expected_trainable(3, 10) == 1_971_352 == trainable_parameters(model)
    whiten = model.get_layer(WHITENING_LAYER)
    assert not whiten.trainable and whiten.kernel.shape == (2, 2, 3, 24)
    assert model.get_layer(f"{WHITENING_LAYER}_bias").trainable
    assert model.count_params() == 1_971_352 + 288 + 2 * (64 + 64 + 256 + 256 + 256 + 256)  # + BN moving stats


def test_convolutions_start_as_the_identity_plus_pytorch_uniform_filters():
    model = build_airbench((32, 32, 3), 10)
    same_width = keras_kernel(model, "group1_conv2")  # 64 -> 64: every filter is the identity
    identity = np.zeros_like(same_width)
    identity[1, 1, np.arange(64), np.arange(64)] = 1.0
    np.testing.assert_array_equal(same_width, identity)
    wider = keras_kernel(model, "group2_conv1")  # 64 -> 256: 64 identity filters, 192 uniform ones
    np.testing.assert_array_equal(wider[..., :64], identity)
    bound = np.float32(1 / np.sqrt(9 * 64))  # the initializer draws in float32: its bound is rounded too
    rest = wider[..., 64:]
    assert np.abs(rest).max() <= bound and np.abs(rest).max() > 0.95 * bound
    assert abs(rest.std() - bound / np.sqrt(3)) < 0.02 * bound  # uniform, not He-normal (std sqrt(2 / fan_in))
    head = keras_kernel(model, "head")
    assert np.abs(head).max() <= 1 / np.sqrt(256)


def keras_kernel(model, name):
    return np.asarray(model.get_layer(name).kernel.numpy())


def test_the_scaled_bias_moves_by_the_multiplier_at_an_unchanged_decay():
    """One SGD step on `ScaledBias(m, wd)` equals PyTorch's step with lr * m and decay wd / (lr * m) * lr."""
    multiplier, weight_decay, lr = 64.0, 0.01, 0.1
    layer = ScaledBias(multiplier, weight_decay)
    layer.build((None, 3))
    start = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    layer.bias.assign(start / np.sqrt(multiplier))  # the shift itself starts at `start`
    upstream = np.array([1.0, 2.0, -3.0], dtype=np.float32)  # d loss / d shift
    with tf.GradientTape() as tape:
        out = layer(tf.zeros((1, 3)))
        loss = tf.reduce_sum(out * upstream) + tf.add_n(layer.losses)
    keras.optimizers.SGD(lr).apply(tape.gradient(loss, [layer.bias]), [layer.bias])
    shift = layer.bias.numpy() * np.sqrt(multiplier)
    expected = start - lr * multiplier * upstream - lr * weight_decay * start
    np.testing.assert_allclose(shift, expected, rtol=1e-5)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_a_distribution_for_every_input_shape(input_shape):
    assert_probabilities_for(build_airbench, input_shape, 7, **SMALL)


def correlated_images(n=300, side=8, seed=0):
    """Smooth, strongly correlated colour images: neighbouring pixels and channels alike."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, side // 2, side // 2, 1))
    images = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2) * np.array([1.0, 0.8, 0.6])
    return (images + 0.3 * rng.normal(size=(n, side, side, 3))).astype(np.float32)


def test_patches_through_the_whitening_filters_have_identity_covariance():
    images = correlated_images()
    patches = patch_vectors(images.astype(np.float64))
    raw = np.cov(patches, rowvar=False)
    assert np.abs(raw - np.diag(np.diag(raw))).max() > 0.3  # the patches are far from white
    kernel = whitening_filters(images, eps=1e-9)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])  # the negatives follow
    whitened = (patches - patches.mean(axis=0)) @ kernel[..., :12].reshape(12, 12)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(12), atol=1e-3)


def test_the_frozen_layer_applies_the_filters_to_every_2x2_patch():
    images = correlated_images(n=20, side=16)
    model = build_airbench((16, 16, 3), 4, **SMALL)
    init_whitening(model, images)
    import keras

    features = keras.Model(model.input, model.get_layer(WHITENING_LAYER).output)(images)
    kernel = whitening_filters(images)
    by_hand = (patch_vectors(images.astype(np.float64)) @ kernel.reshape(12, 24)).reshape(20, 15, 15, 24)
    np.testing.assert_allclose(np.asarray(features), by_hand, rtol=1e-3, atol=1e-3)


def test_the_training_pipeline_whitens_with_the_training_split_alone_as_the_model_sees_it():
    """`build_model` z-scores the training rows and hands them to the registered `data_init`."""
    assert data_init("airbench") is init_whitening and data_init("resnet") is None
    rng = np.random.default_rng(2)
    pool = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    pool[30:] = 255  # the validation rows: a different distribution that must not count
    normalization = {"mean": [120.0, 110.0, 100.0], "std": [60.0, 50.0, 40.0]}
    model = build_model(pool, np.arange(30), ["a", "b"], normalization, {"model": SMALL}, "airbench")
    backbone = model.get_layer("airbench")
    expected = whitening_filters((pool[:30].astype(np.float32) - [120.0, 110.0, 100.0]) / [60.0, 50.0, 40.0])
    kernel = backbone.get_layer(WHITENING_LAYER).get_weights()[0]
    np.testing.assert_allclose(kernel, expected, rtol=1e-3, atol=1e-5)
    with_validation = whitening_filters((pool.astype(np.float32) - [120.0, 110.0, 100.0]) / [60.0, 50.0, 40.0])
    assert np.abs(with_validation - kernel).max() > 0.1  # the validation rows would have changed it


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_airbench, **SMALL)


def test_saves_and_loads_with_its_whitening(tmp_path):
    model = build_airbench((28, 28, 1), 3, **SMALL)
    init_whitening(model, correlated_images(n=10, side=28)[..., :1])
    loaded = assert_saves_and_loads(model, tmp_path)
    np.testing.assert_array_equal(
        loaded.get_layer(WHITENING_LAYER).get_weights()[0], model.get_layer(WHITENING_LAYER).get_weights()[0]
    )
    assert not loaded.get_layer(WHITENING_LAYER).trainable


@pytest.mark.parametrize(("hp", "match"), [({"widths": (64, 256)}, "widths"), ({"logit_scale": 0}, "logit_scale")])
def test_invalid_hyperparameters_are_named(hp, match):
    with pytest.raises(ValueError, match=match):
        build_airbench((32, 32, 3), 10, **hp)


def test_whitening_needs_image_batches():
    with pytest.raises(ValueError, match=r"Whitening needs images \[N, H>=2, W>=2, C\]"):
        whitening_filters(np.zeros((4, 1, 8, 3)))


@pytest.mark.backends
def test_a_scaled_bias_frozen_after_its_epochs_keeps_its_value_and_pays_no_penalty():
    """`learns_for_epochs=1` under Keras' `fit` with `EpochSchedules`, with airbench's Nesterov momentum: the bias
    learns in epoch 0 and stops at once after it (its momentum zeroed)."""
    from convbench.training.callbacks import EpochSchedules

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1)(ScaledBias(4.0, weight_decay=0.1, learns_for_epochs=1, name="shift")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.85, nesterov=True), loss="mse")
    biases = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            biases.append(keras.ops.convert_to_numpy(self.model.get_layer("shift").bias.value).copy())

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[EpochSchedules(), Record()])
    assert np.abs(biases[0]).max() > 1e-3  # learnt in epoch 0
    np.testing.assert_array_equal(biases[1], biases[0])  # frozen from epoch 1 on: no gradient, no decay
    np.testing.assert_array_equal(biases[2], biases[0])
    assert float(keras.ops.convert_to_numpy(model.losses[0])) == 0.0  # the penalty is off while frozen


def test_the_whitening_bias_freeze_is_kept_in_the_saved_model_and_absent_by_default(tmp_path):
    frozen_after_3 = build_airbench((32, 32, 3), 10, whiten_bias_epochs=3, **SMALL)
    bias_layer = frozen_after_3.get_layer(f"{WHITENING_LAYER}_bias")
    assert bias_layer.learn_in_epoch(2) == [] and bias_layer.learn_in_epoch(3) == [bias_layer.bias]  # froze it
    assert bias_layer.learn_in_epoch(4) == []  # already frozen
    path = tmp_path / "airbench.keras"
    frozen_after_3.save(path)
    loaded = keras.saving.load_model(path).get_layer(f"{WHITENING_LAYER}_bias")
    assert loaded.learns_for_epochs == 3 and int(keras.ops.convert_to_numpy(loaded.learning.value)) == 0
    default = build_airbench((32, 32, 3), 10, **SMALL).get_layer(f"{WHITENING_LAYER}_bias")
    assert default.learns_for_epochs is None and [w.name for w in default.weights] == ["bias"]
    for wrong in (-1, True, 2.5):
        with pytest.raises(ValueError, match="learns_for_epochs"):
            ScaledBias(learns_for_epochs=wrong)


def test_convbench_fit_freezes_the_whitening_bias_of_a_recipe_after_its_epochs(tmp_path):
    """The recipe's `model.whiten_bias_epochs` through `build_model` and `fit`: the training's own callbacks
    freeze the bias (none added here but a recorder)."""
    from tiny_training import RECIPE, tiny_data

    from convbench.training.callbacks import nested_layers
    from convbench.training.fit import fit

    recipe = {**RECIPE, "epochs": 3, "model": {**SMALL, "whiten_bias_epochs": 1}}
    images, labels = tiny_data(96, 0)
    statistics = {"mean": [128.0] * 3, "std": [64.0] * 3}
    model = build_model(images, np.arange(96), ["a", "b", "c"], statistics, recipe, "airbench")
    biases = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.weights  # noqa: B018 (under JAX, reading `Callback.model` puts fit's weights back)
            (layer,) = [layer for layer in nested_layers(model) if layer.name == f"{WHITENING_LAYER}_bias"]
            biases.append(keras.ops.convert_to_numpy(layer.bias.value).copy())

    fit(model, (images, labels), tiny_data(32, 1), 3, recipe, tmp_path / "ckpt", "airbench", callbacks=[Record()])
    assert len(biases) == 3 and np.abs(biases[0]).max() > 0  # learnt in epoch 0
    np.testing.assert_array_equal(biases[1], biases[0])
    np.testing.assert_array_equal(biases[2], biases[0])
