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

from convbench.models.xception import build_xception

SMALL = {"middle_blocks": 1, "width": 0.25}

KERAS_XCEPTION_NO_TOP = 20_861_480
KERAS_XCEPTION_NO_TOP_TRAINABLE = 20_806_952
"""keras.applications.Xception(weights=None, include_top=False), Keras 3: all and trainable parameters."""


def test_parameter_count_is_keras_xception_without_top_plus_the_classifier():
    model = build_xception((32, 32, 3), 10)
    assert trainable_parameters(model) == KERAS_XCEPTION_NO_TOP_TRAINABLE + 2048 * 10 + 10 == 20_827_442
    assert model.count_params() == KERAS_XCEPTION_NO_TOP + 2048 * 10 + 10
    assert model.name == "xception"
    assert not model.losses


@pytest.mark.parametrize(
    ("input_shape", "middle_size", "exit_size"),
    [((32, 32, 3), 8, 4), ((28, 28, 1), 7, 4), ((48, 48, 1), 12, 6)],
)
def test_downsamples_8x_with_the_middle_flow_after_two_strided_entry_blocks(input_shape, middle_size, exit_size):
    model = build_xception(input_shape, 10, **SMALL)
    assert model.get_layer("entry_conv2_relu").output.shape[1:3] == input_shape[:2]
    assert model.get_layer("middle_block1_add").output.shape[1:3] == (middle_size, middle_size)
    assert model.get_layer("exit_sepconv2_relu").output.shape[1:3] == (exit_size, exit_size)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_class_probabilities_for_every_input_shape(input_shape):
    assert_probabilities_for(build_xception, input_shape, num_classes=7, **SMALL)


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_xception, **SMALL)


def test_saves_and_loads_without_custom_objects(tmp_path):
    loaded = assert_saves_and_loads(build_xception((48, 48, 1), 7, name="tiny_xception", **SMALL), tmp_path)
    assert loaded.name == "tiny_xception"


def test_middle_blocks_sets_the_number_of_middle_flow_residual_blocks():
    def middle_adds(model):
        return [layer.name for layer in model.layers if layer.name.startswith("middle") and layer.name.endswith("_add")]

    one, three = (build_xception((32, 32, 3), 10, middle_blocks=n, width=0.25) for n in (1, 3))
    assert middle_adds(one) == ["middle_block1_add"]
    assert len(middle_adds(three)) == 3
    channels = 182
    per_block = 3 * (9 * channels + channels * channels + 2 * channels)  # depthwise, pointwise, BN gamma and beta
    assert trainable_parameters(three) - trainable_parameters(one) == 2 * per_block
    assert not middle_adds(build_xception((32, 32, 3), 10, middle_blocks=0, width=0.25))


@pytest.mark.parametrize("middle_blocks", [-1, 1.5, True])
def test_middle_blocks_must_be_a_non_negative_integer(middle_blocks):
    with pytest.raises(ValueError, match=f"middle_blocks={middle_blocks!r}"):
        build_xception((32, 32, 3), 10, middle_blocks=middle_blocks)


def test_width_multiplies_every_filter_count():
    model = build_xception((32, 32, 3), 10, middle_blocks=1, width=0.5)
    assert model.get_layer("entry_conv1_conv").filters == 16
    assert model.get_layer("entry_block3_sepconv2").filters == 364
    assert model.get_layer("middle_block1_sepconv3").filters == 364
    assert model.get_layer("exit_block_shortcut_conv").filters == 512
    assert model.get_layer("predictions").kernel.shape == (1024, 10)


@pytest.mark.parametrize("width", [0, -1.0])
def test_width_must_be_positive(width):
    with pytest.raises(ValueError, match=f"width={width}"):
        build_xception((32, 32, 3), 10, width=width)


def test_weight_decay_penalises_every_kernel_depthwise_and_pointwise_alike():
    model = build_xception((32, 32, 3), 10, weight_decay=4e-5, **SMALL)
    convolutions = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D]
    separables = [layer for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)]
    assert (len(convolutions), len(separables)) == (2 + 4, 6 + 3 + 2 + 2)
    assert len(model.losses) == len(convolutions) + 2 * len(separables) + 1


def test_middle_block_adds_its_input_unchanged():
    model = build_xception((32, 32, 3), 10, **SMALL)
    names = ("entry_block3_add", "middle_block1_sepconv3_bn", "middle_block1_add")
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    block_input, residual, block_output = (
        np.asarray(tensor) for tensor in probe(np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32"))
    )
    np.testing.assert_allclose(block_output, block_input + residual, rtol=1e-5, atol=1e-5)
