import numpy as np
import pytest
from keras import layers
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.hierarchical import STAGES, build_hierarchical

SMALL = {"base_filters": 8}


def expected_trainable(channels: int, num_classes: int, base_filters: int = 32) -> int:
    """By hand: per stage three branches of filters/2 (1x1, 3x3, dilated 3x3), a 1x1 fuse and a 1x1 projection."""
    total = 0
    for index in range(4):
        filters = base_filters * 2**index
        half = filters // 2
        branches = (1 + 9 + 9) * channels * half + 3 * 2 * half
        fuse = 3 * half * filters + 2 * filters
        projection = channels * filters + 2 * filters
        total += branches + fuse + projection
        channels = filters
    return total + channels * num_classes + num_classes


def test_parameter_count_at_defaults():
    model = build_hierarchical((32, 32, 3), 10)
    assert trainable_parameters(model) == expected_trainable(3, 10) == 589_082
    assert 0.5e6 <= model.count_params() <= 1.5e6


def test_doubling_base_filters_about_quadruples_the_parameters():
    narrow = trainable_parameters(build_hierarchical((32, 32, 3), 10, base_filters=16))
    wide = trainable_parameters(build_hierarchical((32, 32, 3), 10, base_filters=32))
    assert narrow == expected_trainable(3, 10, base_filters=16)
    assert 3.8 < wide / narrow < 4.1


def test_stages_go_from_edges_to_objects_with_doubling_width_and_halving_size():
    model = build_hierarchical((32, 32, 3), 10, **SMALL)
    shapes = [tuple(model.get_layer(f"{stage}_out").output.shape[1:]) for stage in STAGES]
    assert STAGES == ("edges", "shapes", "parts", "objects")
    assert shapes == [(32, 32, 8), (16, 16, 16), (8, 8, 32), (4, 4, 64)]
    assert model.get_layer("edges_context_conv").dilation_rate == (2, 2)


def test_mnist_pools_28_to_3_without_resizing():
    model = build_hierarchical((28, 28, 1), 10, **SMALL)
    assert tuple(model.get_layer("objects_out").output.shape[1:3]) == (3, 3)
    assert not [layer for layer in model.layers if isinstance(layer, layers.Resizing)]


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_gives_probabilities(input_shape):
    assert_probabilities_for(build_hierarchical, input_shape, 7, **SMALL)


def test_one_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_hierarchical, **SMALL)


def test_saves_and_loads(tmp_path):
    assert_saves_and_loads(build_hierarchical((28, 28, 1), 10, dropout=0.2, weight_decay=5e-4, **SMALL), tmp_path)


def test_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_hierarchical((32, 32, 3), 10, weight_decay=5e-4, **SMALL)
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    kernels = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.Dense))]
    assert len(model.losses) == len(kernels) == 4 * 5 + 1


def test_dropout_before_the_classifier_only_when_asked():
    assert "dropout" not in [layer.name for layer in build_hierarchical((32, 32, 3), 10, **SMALL).layers]
    model = build_hierarchical((32, 32, 3), 10, dropout=0.3, **SMALL)
    assert model.get_layer("dropout").rate == 0.3
    assert model.get_layer("predictions").input is model.get_layer("dropout").output


def test_name_defaults_to_the_architecture():
    assert build_hierarchical((32, 32, 3), 10, **SMALL).name == "hierarchical"
    assert build_hierarchical((32, 32, 3), 10, name="mine", **SMALL).name == "mine"


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"base_filters": 1}, "base_filters=1"),
        ({"base_filters": 8.0}, "base_filters=8.0"),
        ({"dropout": 1}, "dropout=1"),
    ],
)
def test_rejects_invalid_hyperparameters(hp, message):
    with pytest.raises(ValueError, match=message):
        build_hierarchical((32, 32, 3), 10, **hp)
