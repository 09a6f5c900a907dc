import math

import keras
import pytest
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.densenet import build_densenet


def hand_count(depth: int, k: int, compression: float, channels: int, num_classes: int) -> int:
    """Trainable parameters by hand: bias-free convs, BN gamma + beta, softmax weights + biases.

    Stem: 3x3 conv to 2k. A bottleneck layer on c channels: BN 2c, 1x1 conv c*4k, BN 8k, 3x3 conv
    4k*9k, adding k channels. A transition on c channels: BN 2c, 1x1 conv c*floor(theta*c).
    Final BN on c, dense c -> classes.
    """
    total = 9 * channels * 2 * k
    c = 2 * k
    for block in range(3):
        for _ in range((depth - 4) // 6):
            total += 2 * c + c * 4 * k + 8 * k + 36 * k * k
            c += k
        if block < 2:
            kept = math.floor(compression * c)
            total += 2 * c + c * kept
            c = kept
    return total + 2 * c + c * num_classes + num_classes


def test_parameter_count_matches_the_paper():
    # Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) has 0.8 M parameters; 769,162 in the PyTorch reference.
    model = build_densenet((32, 32, 3), 10)
    assert trainable_parameters(model) == hand_count(100, 12, 0.5, 3, 10) == 769_162
    assert round(trainable_parameters(model) / 1e6, 1) == 0.8  # the paper gives millions to one decimal
    assert model.name == "densenet_bc100_k12"


@pytest.mark.parametrize(
    ("input_shape", "num_classes", "hp"),
    [((28, 28, 1), 10, {"depth": 22, "growth_rate": 6}), ((48, 48, 1), 7, {"depth": 16, "compression": 1.0})],
)
def test_parameter_count_follows_the_hand_count(input_shape, num_classes, hp):
    model = build_densenet(input_shape, num_classes, **hp)
    full = {"depth": 100, "growth_rate": 12, "compression": 0.5} | hp
    expected = hand_count(full["depth"], full["growth_rate"], full["compression"], input_shape[-1], num_classes)
    assert trainable_parameters(model) == expected


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_probabilities_for_every_input_shape(input_shape):
    assert_probabilities_for(build_densenet, input_shape, 7, depth=16, growth_rate=6)


@pytest.mark.parametrize(("depth", "layers_per_block"), [(16, 2), (22, 3)])
def test_depth_sets_the_bottleneck_layers_per_block(depth, layers_per_block):
    model = build_densenet((32, 32, 3), 10, depth=depth, growth_rate=6)
    concatenations = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert len(concatenations) == 3 * layers_per_block
    assert f"block3_layer{layers_per_block}_concat" in concatenations
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) + 1 == depth  # stem, two per bottleneck layer, two transitions, + the classifier


@pytest.mark.parametrize("depth", [4, 9, 17, 101])
def test_depth_must_be_6n_plus_4(depth):
    with pytest.raises(ValueError, match=rf"6n\+4.*Received: depth={depth}$"):
        build_densenet((32, 32, 3), 10, depth=depth)


def test_growth_rate_and_compression_set_the_channels():
    model = build_densenet((32, 32, 3), 10, depth=16, growth_rate=8, compression=0.5)
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("block1_layer1_1_conv").filters == 32
    assert model.get_layer("block1_layer1_2_conv").filters == 8
    assert model.get_layer("block1_layer2_concat").output.shape[1:] == (32, 32, 32)  # 2k + 2k
    assert model.get_layer("transition1_conv").filters == 16
    assert model.get_layer("transition1_pool").output.shape[1:] == (16, 16, 16)
    uncompressed = build_densenet((32, 32, 3), 10, depth=16, growth_rate=8, compression=1.0)
    assert uncompressed.get_layer("transition1_conv").filters == 32
    assert uncompressed.get_layer("post_relu").output.shape[1:] == (8, 8, 16 + 6 * 8)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"growth_rate": 0}, "growth_rate=0"),
        ({"compression": 0.0}, "compression=0.0"),
        ({"compression": 1.5}, "compression=1.5"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
    ],
)
def test_invalid_hyperparameters_are_rejected(hp, message):
    with pytest.raises(ValueError, match=message):
        build_densenet((32, 32, 3), 10, depth=16, **hp)


def test_dropout_follows_every_convolution_but_the_stem():
    plain = build_densenet((32, 32, 3), 10, depth=16, growth_rate=6)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)
    model = build_densenet((32, 32, 3), 10, depth=16, growth_rate=6, dropout=0.2)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 3 * 2 * 2 + 2
    assert {layer.rate for layer in dropouts} == {0.2}
    assert trainable_parameters(model) == trainable_parameters(plain)


def test_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_densenet((32, 32, 3), 10, depth=16, growth_rate=6, weight_decay=1e-4)
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    model(keras.ops.zeros((1, 32, 32, 3)))
    assert len(model.losses) == len(kernels) == 16


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_densenet, depth=16, growth_rate=6)


def test_saves_and_loads_without_custom_objects(tmp_path):
    assert_saves_and_loads(build_densenet((28, 28, 1), 5, depth=16, growth_rate=6, dropout=0.2), tmp_path)
