import re
import shutil
import socket
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from imagenet_weights import write_mobilenet_v2_weights
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.mobilenet import (
    WEIGHTS_URL_BASE,
    build_mobilenet_v2,
    imagenet_weights_path,
    scaled_channels,
)

SMALL = {"alpha": 0.35}
WEIGHTS_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch a file fails the test instead of reaching the network.

    Blocked where every download must pass, whatever module asks for it (keras.applications
    calls its own copy of `get_file`): name resolution and socket connections.
    """

    def fail(*args, **kwargs):
        raise AssertionError(f"Tried to download: {args} {kwargs}")

    monkeypatch.setattr(keras.utils, "get_file", fail)
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(socket.socket, "connect", fail)
    monkeypatch.setattr(socket.socket, "connect_ex", fail)


def test_downloads_fail_the_test():
    with pytest.raises(AssertionError, match="Tried to download"):
        keras.utils.get_file(origin=f"{WEIGHTS_URL_BASE}{WEIGHTS_NAME}")
    # Keras' own route to its ImageNet weights (a size no run uses, so that no cached copy answers).
    with pytest.raises(AssertionError, match="Tried to download"):
        keras.applications.MobileNetV2(weights="imagenet", include_top=False, alpha=1.3, input_shape=(160, 160, 3))


@pytest.fixture
def eager_training():
    """Training steps run eagerly: the same arithmetic without ~20 s of graph compilation per model on a CPU."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def full_size():
    return build_mobilenet_v2((32, 32, 3), 10)


# --- from scratch: kuangliu/pytorch-cifar models/mobilenetv2.py ---------------------------------------------------


def test_parameter_count_matches_pytorch_cifar(full_size):
    # Counted from pytorch-cifar's MobileNetV2(num_classes=10): convs without bias, BN everywhere,
    # an expansion in every block, 1x1 conv + BN shortcuts where a stride-1 block changes width.
    assert trainable_parameters(full_size) == 2_296_922


def test_without_projection_shortcuts_and_first_expansion_it_is_the_papers_count(full_size):
    # torchvision's mobilenet_v2 (the paper's network): 3,504,872 parameters for 1000 classes,
    # 2,236,682 with a 10-class classifier.
    extra = [
        layer
        for layer in full_size.layers
        if "_shortcut_" in layer.name or layer.name.startswith("stage1_block1_expand_")
    ]
    extra_parameters = sum(trainable_parameters(layer) for layer in extra)
    assert extra_parameters == 59_152 + 1_088
    assert trainable_parameters(full_size) - extra_parameters == 2_236_682


@pytest.mark.parametrize(("input_shape", "final_size"), list(zip(INPUT_SHAPES, (4, 4, 6))))
def test_scratch_model_outputs_probabilities_for_every_input_shape(input_shape, final_size):
    model = assert_probabilities_for(build_mobilenet_v2, input_shape, 7, **SMALL)
    assert model.get_layer("head_relu").output.shape[1:3] == (final_size, final_size)
    assert model.name == "mobilenet_v2"


@pytest.mark.usefixtures("eager_training")
def test_scratch_model_learns_in_one_step():
    assert_one_step_lowers_the_loss(build_mobilenet_v2, **SMALL)


def test_scratch_model_saves_and_loads(tmp_path):
    assert_saves_and_loads(build_mobilenet_v2((28, 28, 1), 3, **SMALL), tmp_path)


def test_shortcut_is_identity_or_projection_at_stride_1_and_absent_at_stride_2(full_size):
    names = {layer.name for layer in full_size.layers}
    assert {"stage2_block1_shortcut_conv", "stage2_block1_add"} <= names  # 16 -> 24 channels, stride 1
    assert "stage2_block2_add" in names and "stage2_block2_shortcut_conv" not in names  # 24 -> 24
    assert not any(name.startswith("stage3_block1_") and "add" in name for name in names)  # stride 2
    assert full_size.get_layer("stage3_block1_depthwise_conv").strides == (2, 2)
    assert full_size.get_layer("stage2_block1_depthwise_conv").strides == (1, 1)


def test_alpha_scales_channels_to_multiples_of_8():
    assert scaled_channels(1.0) == (32, (16, 24, 32, 64, 96, 160, 320), 1280)
    assert scaled_channels(0.35) == (16, (8, 8, 16, 24, 32, 56, 112), 1280)
    assert scaled_channels(1.4) == (48, (24, 32, 48, 88, 136, 224, 448), 1792)
    model = build_mobilenet_v2((32, 32, 3), 10, alpha=0.35)
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("stage7_block1_project_conv").filters == 112
    assert trainable_parameters(model) < 2_296_922 / 4


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match=f"alpha={alpha}"):
        build_mobilenet_v2((32, 32, 3), 10, alpha=alpha)


def test_dropout_sets_the_rate_before_the_classifier_and_zero_removes_it():
    assert build_mobilenet_v2((32, 32, 3), 10, **SMALL).get_layer("dropout").rate == 0.2
    names = {layer.name for layer in build_mobilenet_v2((32, 32, 3), 10, dropout=0.0, **SMALL).layers}
    assert "dropout" not in names
    with pytest.raises(ValueError, match=re.escape("dropout=1.0")):
        build_mobilenet_v2((32, 32, 3), 10, dropout=1.0)


def test_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_mobilenet_v2((32, 32, 3), 10, weight_decay=5e-4, **SMALL)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    counts = {kind: sum(isinstance(layer, kind) for layer in model.layers) for kind in kinds}
    # stem + 17 x (expansion, projection) + 3 shortcuts (at alpha 0.35 stage 2 keeps 8 channels) + head;
    # 17 depthwise; the classifier
    assert list(counts.values()) == [39, 17, 1]
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(model.losses) == 57


@pytest.mark.parametrize(("weights", "match"), [("cifar", "weights='cifar'"), ("IMAGENET", "weights='IMAGENET'")])
def test_unknown_weights_are_rejected(weights, match):
    with pytest.raises(ValueError, match=match):
        build_mobilenet_v2((32, 32, 3), 10, weights=weights)


def test_weights_file_without_imagenet_weights_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="weights_file"):
        build_mobilenet_v2((32, 32, 3), 10, weights_file=tmp_path / WEIGHTS_NAME)


# --- ImageNet transfer -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A stand-in for Keras' cached ImageNet file: random weights (BN statistics included), same HDF5 format."""
    return write_mobilenet_v2_weights(tmp_path_factory.mktemp("weights") / WEIGHTS_NAME, alpha=0.35, input_size=96)


def weights_in(path) -> dict[str, list[np.ndarray]]:
    """Per layer name, the weight arrays stored in a Keras legacy HDF5 weights file."""
    with h5py.File(path, "r") as file:
        return {
            name.decode(): [np.asarray(file[name][weight]) for weight in file[name].attrs["weight_names"]]
            for name in file.attrs["layer_names"]
            if len(file[name].attrs["weight_names"])
        }


def transfer(input_shape=(32, 32, 3), num_classes=10, **hp):
    return build_mobilenet_v2(input_shape, num_classes, weights="imagenet", alpha=0.35, input_size=96, **hp)


def test_pretrained_base_holds_exactly_the_weights_of_the_file(weights_file):
    base = transfer(weights_file=weights_file).get_layer("pretrained_base")
    stored = weights_in(weights_file)
    assert len(stored) == len([layer for layer in base.layers if layer.weights]) == 104
    for name, arrays in stored.items():
        for loaded, expected in zip(base.get_layer(name).get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(loaded, expected)


def test_weights_are_read_from_keras_cache_under_keras_home(weights_file, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected_path = tmp_path / "models" / WEIGHTS_NAME
    assert imagenet_weights_path(0.35, 96) == expected_path
    expected_path.parent.mkdir()
    shutil.copy(weights_file, expected_path)
    base = transfer().get_layer("pretrained_base")
    np.testing.assert_array_equal(base.get_layer("Conv1").get_weights()[0], weights_in(weights_file)["Conv1"][0])


def test_weights_path_uses_keras_file_name_or_the_given_file(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert imagenet_weights_path(1.0, 224) == tmp_path / ".keras" / "models" / name
    assert imagenet_weights_path(0.5, 128, "elsewhere/w.h5") == Path("elsewhere/w.h5")


def test_missing_weights_raise_with_the_path_the_url_and_a_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        transfer()
    message = str(error.value)
    assert str(tmp_path / "models" / WEIGHTS_NAME) in message
    assert WEIGHTS_URL_BASE + WEIGHTS_NAME in message
    assert "keras.applications.MobileNetV2(weights='imagenet'" in message and "alpha=0.35" in message


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nowhere.h5")):
        transfer(weights_file=tmp_path / "nowhere.h5")


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_transfer_model_upscales_every_input_shape_to_rgb_96(weights_file, input_shape):
    model = assert_probabilities_for(transfer, input_shape, 7, weights_file=weights_file)
    assert model.get_layer("pretrained_base").input.shape == (None, 96, 96, 3)
    assert model.get_layer("upsample").output.shape == (None, 96, 96, 3)
    assert model.name == "mobilenet_v2_imagenet"


def test_grey_is_repeated_into_three_equal_channels(weights_file):
    model = transfer((28, 28, 1), weights_file=weights_file)
    grey = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32")
    rgb = keras.Model(model.input, model.get_layer("grey_to_rgb").output)(grey).numpy()
    np.testing.assert_array_equal(rgb, np.repeat(grey, 3, axis=-1))


def test_z_scores_are_halved_and_inputs_of_input_size_are_not_resized(weights_file):
    model = transfer((96, 96, 3), weights_file=weights_file)
    assert "upsample" not in {layer.name for layer in model.layers}
    images = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    scaled = keras.Model(model.input, model.get_layer("imagenet_scale").output)(images).numpy()
    np.testing.assert_allclose(scaled, images / 2)


@pytest.mark.usefixtures("eager_training")
def test_frozen_base_leaves_only_the_head_to_train(weights_file):
    model = transfer(weights_file=weights_file)
    base = model.get_layer("pretrained_base")
    base.trainable = False
    assert trainable_parameters(model) == 1280 * 10 + 10
    before = [w.copy() for w in base.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    model.train_on_batch(images, keras.utils.to_categorical([0, 1, 2, 3], 10))
    for kept, now in zip(before, base.get_weights(), strict=True):  # batch-norm statistics included
        np.testing.assert_array_equal(kept, now)


@pytest.mark.usefixtures("eager_training")
def test_whole_transfer_model_learns_in_one_step(weights_file):
    # Fine-tuning's learning rate: Adam's default 1e-3 on every pretrained weight overshoots.
    assert_one_step_lowers_the_loss(transfer, learning_rate=1e-4, weights_file=weights_file)


def test_transfer_model_saves_and_loads_without_custom_objects(weights_file, tmp_path):
    loaded = assert_saves_and_loads(transfer((28, 28, 1), 3, weights_file=weights_file), tmp_path)
    assert loaded.get_layer("pretrained_base").input.shape == (None, 96, 96, 3)


def test_transfer_head_has_dropout_and_weight_decay_only_on_the_classifier(weights_file):
    model = transfer(weights_file=weights_file, dropout=0.3, weight_decay=5e-4)
    assert model.get_layer("dropout").rate == 0.3
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(model.losses) == 1


@pytest.mark.parametrize("input_size", [32, 100])
def test_input_size_must_be_a_pretrained_size(input_size, weights_file):
    with pytest.raises(ValueError, match=f"input_size={input_size}"):
        build_mobilenet_v2((32, 32, 3), 10, weights="imagenet", input_size=input_size, weights_file=weights_file)


@pytest.mark.parametrize("alpha", [0.25, 0.6, 2.0])
def test_alpha_must_have_imagenet_weights(alpha, weights_file):
    with pytest.raises(ValueError, match=f"alpha={alpha}"):
        build_mobilenet_v2((32, 32, 3), 10, weights="imagenet", alpha=alpha, weights_file=weights_file)


def test_transfer_needs_one_or_three_channels(weights_file):
    with pytest.raises(ValueError, match=r"input_shape\[-1\]=2"):
        transfer((32, 32, 2), weights_file=weights_file)
