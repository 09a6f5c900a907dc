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

from convbench.models.alexnet import build_alexnet

SMALL = {"fc_units": 64}


def conv(in_channels: int, out_channels: int, kernel_size: int) -> int:
    """Parameters of a square convolution with bias."""
    return kernel_size * kernel_size * in_channels * out_channels + out_channels


def dense(in_units: int, out_units: int) -> int:
    return in_units * out_units + out_units


def alexnet_parameters(channels: int, num_classes: int, flat: int = 2 * 2 * 256, fc_units: int = 4096) -> int:
    """AlexNet's count by layer: five convolutions with bias, BN scale and offset, three dense layers."""
    filters = (channels, 96, 256, 384, 384, 256)
    kernels = (11, 5, 3, 3, 3)
    convolutions = sum(conv(a, b, k) for a, b, k in zip(filters, filters[1:], kernels))
    batch_norms = 2 * sum(filters[1:])
    return convolutions + batch_norms + dense(flat, fc_units) + dense(fc_units, fc_units) + dense(fc_units, num_classes)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_a_distribution_over_classes_for_every_input_shape(input_shape):
    assert_probabilities_for(build_alexnet, input_shape, 7, **SMALL)


def test_parameter_count_is_the_papers_layers_on_a_2x2_map_about_25_million():
    # Paper widths and kernels, FC input 2x2x256; BN adds 2 x (96 + 256 + 384 + 384 + 256) = 2,752.
    count = trainable_parameters(build_alexnet((32, 32, 3), 10))
    assert count == alexnet_parameters(3, 10) == 24_770_634
    assert abs(count - 25_000_000) / 25_000_000 < 0.01  # the reference: about 25 M


def test_small_inputs_are_upsampled_to_the_cifar_geometry():
    mnist = build_alexnet((28, 28, 1), 10, **SMALL)
    assert mnist.get_layer("upsample").output.shape[1:3] == (32, 32)
    assert mnist.get_layer("flatten").output.shape[-1] == 2 * 2 * 256
    cifar = build_alexnet((32, 32, 3), 10, **SMALL)
    assert "upsample" not in [layer.name for layer in cifar.layers]


def test_larger_inputs_give_a_larger_map_to_the_dense_layers():
    model = build_alexnet((48, 48, 1), 7)
    assert model.get_layer("flatten").output.shape[-1] == 3 * 3 * 256
    assert trainable_parameters(model) == alexnet_parameters(1, 7, flat=3 * 3 * 256)


def test_first_convolution_has_stride_two_and_three_poolings_halve_the_map():
    model = build_alexnet((32, 32, 3), 10, **SMALL)
    sizes = [model.get_layer(name).output.shape[1] for name in ("conv1", "pool1", "pool2", "conv5", "pool5")]
    assert sizes == [16, 8, 4, 4, 2]


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_alexnet, **SMALL)


def test_saves_and_loads_without_custom_objects(tmp_path):
    assert_saves_and_loads(build_alexnet((28, 28, 1), 3, **SMALL), tmp_path)


def test_fc_units_sets_the_width_of_both_hidden_layers():
    model = build_alexnet((32, 32, 3), 10, fc_units=100)
    assert [model.get_layer(name).units for name in ("fc1", "fc2")] == [100, 100]
    assert trainable_parameters(model) == alexnet_parameters(3, 10, fc_units=100)


def test_dropout_sets_the_rate_before_each_dense_layer_and_zero_removes_it():
    model = build_alexnet((32, 32, 3), 10, dropout=0.3, **SMALL)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.3, 0.3]
    without = build_alexnet((32, 32, 3), 10, dropout=0.0, **SMALL)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in without.layers)


@pytest.mark.parametrize(("parameter", "value"), [("dropout", 1.0), ("dropout", -0.1), ("fc_units", 0)])
def test_invalid_hyperparameters_raise_naming_parameter_and_value(parameter, value):
    with pytest.raises(ValueError, match=f"{parameter}={value}"):
        build_alexnet((32, 32, 3), 10, **{**SMALL, parameter: value})


def test_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_alexnet((32, 32, 3), 10, weight_decay=5e-4, **SMALL)
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(model.losses) == 5 + 3  # five convolutions, two hidden dense layers, the classifier
    assert not build_alexnet((32, 32, 3), 10, **SMALL).losses


def test_name_defaults_to_the_architecture():
    assert build_alexnet((32, 32, 3), 10, **SMALL).name == "alexnet"
    assert build_alexnet((32, 32, 3), 10, name="alex", **SMALL).name == "alex"
