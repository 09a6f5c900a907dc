import itertools

import keras
import numpy as np
import pytest
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.vgg import FERPLUS_VGG13_STAGES, VGG16_STAGES, build_vgg13, build_vgg16

SMALL_VGG13 = {"input_size": 32, "fc_units": 64}


def conv(in_channels: int, out_channels: int) -> int:
    """Parameters of a 3x3 convolution with bias."""
    return 9 * in_channels * out_channels + out_channels


def dense(in_units: int, out_units: int) -> int:
    return in_units * out_units + out_units


def conv_widths(channels: int, stages) -> list[int]:
    return [channels] + [filters for filters, convolutions in stages for _ in range(convolutions)]


def layers_of(model: keras.Model, kind: type) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, kind)]


# --- vgg16 (kuangliu/pytorch-cifar) ---


@pytest.fixture(scope="module")
def vgg16_cifar() -> keras.Model:
    """The full VGG16 on CIFAR-10 shapes, with weight decay (which adds no parameters)."""
    return build_vgg16((32, 32, 3), 10, weight_decay=5e-4)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_vgg16_outputs_a_distribution_and_reaches_a_one_by_one_map_for_every_input_shape(input_shape):
    model = assert_probabilities_for(build_vgg16, input_shape, 7)
    assert model.get_layer("stage5_pool").output.shape[1:] == (1, 1, 512)
    assert ("upsample" in [layer.name for layer in model.layers]) == (input_shape[0] < 32)
    assert not model.losses  # no weight decay by default


def test_vgg16_upsamples_mnist_to_32():
    assert build_vgg16((28, 28, 1), 10).get_layer("upsample").output.shape[1:3] == (32, 32)


def test_vgg16_parameter_count_equals_pytorch_cifar_vgg16(vgg16_cifar):
    # pytorch-cifar VGG('VGG16'): Conv2d(bias=True) + BatchNorm2d per layer, Linear(512, 10): 14,728,266.
    widths = conv_widths(3, VGG16_STAGES)
    expected = sum(conv(a, b) + 2 * b for a, b in itertools.pairwise(widths)) + dense(512, 10)
    assert trainable_parameters(vgg16_cifar) == expected == 14_728_266


def test_vgg16_has_thirteen_conv_bn_layers_in_five_pooled_stages(vgg16_cifar):
    assert len(layers_of(vgg16_cifar, keras.layers.Conv2D)) == 13
    assert len(layers_of(vgg16_cifar, keras.layers.BatchNormalization)) == 13
    assert [layer.output.shape[1] for layer in layers_of(vgg16_cifar, keras.layers.MaxPooling2D)] == [16, 8, 4, 2, 1]
    assert not layers_of(vgg16_cifar, keras.layers.Dropout)


def test_vgg16_weight_decay_adds_one_l2_penalty_per_kernel(vgg16_cifar):
    vgg16_cifar(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(vgg16_cifar.losses) == 13 + 1


def test_vgg16_name_defaults_to_the_architecture(vgg16_cifar):
    assert vgg16_cifar.name == "vgg16"


def test_vgg16_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_vgg16, batch_size=8)


def test_vgg16_saves_and_loads_without_custom_objects(tmp_path):
    assert_saves_and_loads(build_vgg16((28, 28, 1), 3, name="vgg16_mnist"), tmp_path)


# --- vgg13 (FERPlus) ---


def ferplus_vgg13_parameters(channels: int, num_classes: int, input_size: int = 64, fc_units: int = 1024) -> int:
    """microsoft/FERPlus models.py VGG13 by layer: ten convolutions with bias, no BN, three dense layers."""
    widths = conv_widths(channels, FERPLUS_VGG13_STAGES)
    flat = (input_size // 16) ** 2 * 256
    convolutions = sum(conv(a, b) for a, b in itertools.pairwise(widths))
    return convolutions + dense(flat, fc_units) + dense(fc_units, fc_units) + dense(fc_units, num_classes)


@pytest.fixture(scope="module")
def vgg13_ferplus() -> keras.Model:
    """The full VGG13 on FERPlus shapes: 64x64 grey faces, 8 emotions."""
    return build_vgg13((64, 64, 1), 8)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_vgg13_outputs_a_distribution_and_resizes_every_input_shape_to_64(input_shape):
    model = assert_probabilities_for(build_vgg13, input_shape, 7)
    assert model.get_layer("resize").output.shape[1:] == (64, 64, input_shape[-1])
    assert trainable_parameters(model) == ferplus_vgg13_parameters(input_shape[-1], 7)


def test_vgg13_parameter_count_on_ferplus_follows_the_paper_structure(vgg13_ferplus):
    assert trainable_parameters(vgg13_ferplus) == ferplus_vgg13_parameters(1, 8) == 8_757_704
    assert "resize" not in [layer.name for layer in vgg13_ferplus.layers]


def test_vgg13_has_ten_convolutions_in_four_stages_each_followed_by_dropout(vgg13_ferplus):
    model = vgg13_ferplus
    assert len(layers_of(model, keras.layers.Conv2D)) == 10
    assert not layers_of(model, keras.layers.BatchNormalization)
    assert [layer.output.shape[1] for layer in layers_of(model, keras.layers.MaxPooling2D)] == [32, 16, 8, 4]
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.25] * 4 + [0.5] * 2


def test_vgg13_input_size_sets_the_resolution_the_convolutions_see():
    model = build_vgg13((48, 48, 1), 8, input_size=32, fc_units=64)
    assert model.get_layer("resize").output.shape[1:3] == (32, 32)
    assert trainable_parameters(model) == ferplus_vgg13_parameters(1, 8, input_size=32, fc_units=64)
    native = build_vgg13((48, 48, 1), 8, input_size=48, fc_units=64)
    assert "resize" not in [layer.name for layer in native.layers]


def test_vgg13_dropout_rates_and_zero_removes_the_layers():
    model = build_vgg13((32, 32, 3), 10, conv_dropout=0.1, dropout=0.3, **SMALL_VGG13)
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.1] * 4 + [0.3] * 2
    without = build_vgg13((32, 32, 3), 10, conv_dropout=0.0, dropout=0.0, **SMALL_VGG13)
    assert not layers_of(without, keras.layers.Dropout)


def test_vgg13_fc_units_sets_the_width_of_both_hidden_layers():
    model = build_vgg13((32, 32, 3), 10, input_size=32, fc_units=100)
    assert [model.get_layer(name).units for name in ("fc1", "fc2")] == [100, 100]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("input_size", 8), ("conv_dropout", 1.0), ("dropout", -0.5), ("fc_units", 0)],
)
def test_vgg13_invalid_hyperparameters_raise_naming_parameter_and_value(parameter, value):
    with pytest.raises(ValueError, match=f"{parameter}={value}"):
        build_vgg13((32, 32, 3), 10, **{**SMALL_VGG13, parameter: value})


def test_vgg13_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_vgg13, **SMALL_VGG13)


def test_vgg13_saves_and_loads_without_custom_objects(tmp_path):
    assert_saves_and_loads(build_vgg13((48, 48, 1), 3, **SMALL_VGG13), tmp_path)


def test_vgg13_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_vgg13((32, 32, 3), 10, weight_decay=5e-4, **SMALL_VGG13)
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(model.losses) == 10 + 3
    assert not build_vgg13((32, 32, 3), 10, **SMALL_VGG13).losses


def test_vgg13_name_defaults_to_the_architecture(vgg13_ferplus):
    assert vgg13_ferplus.name == "vgg13"
    assert build_vgg13((32, 32, 3), 10, name="v", **SMALL_VGG13).name == "v"
