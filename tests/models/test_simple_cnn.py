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

from convbench.models.simple_cnn import build_simple_cnn

SMALL = {"filters": (8, 16, 16)}


def expected_parameters(channels: int, side: int, num_classes: int, filters=(32, 64, 128)) -> tuple[int, int]:
    """(trainable, total) by hand: per conv 9*in*out + out, per BN 2*out trainable + 2*out moving statistics."""
    trainable = moving = 0
    for out in filters:
        for _ in range(2):
            trainable += 9 * channels * out + out + 2 * out
            moving += 2 * out
            channels = out
        side //= 2
    trainable += side * side * channels * num_classes + num_classes
    return trainable, trainable + moving


def test_parameter_count_is_the_course_figure_on_cifar():
    # About 0.31 M: 309,290 in all, 308,394 trainable.
    model = build_simple_cnn((32, 32, 3), 10)
    assert expected_parameters(3, 32, 10) == (308_394, 309_290)
    assert trainable_parameters(model) == 308_394
    assert model.count_params() == 309_290


def test_mnist_pools_28_to_3_without_resizing():
    model = build_simple_cnn((28, 28, 1), 10)
    assert tuple(model.get_layer("stage3_pool").output.shape[1:]) == (3, 3, 128)
    assert not [layer for layer in model.layers if isinstance(layer, layers.Resizing)]
    assert (trainable_parameters(model), model.count_params()) == expected_parameters(1, 28, 10)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_gives_probabilities(input_shape):
    assert_probabilities_for(build_simple_cnn, input_shape, 7, **SMALL)


def test_default_model_gives_probabilities():
    model = assert_probabilities_for(build_simple_cnn, (32, 32, 3), 10)
    assert model.name == "simple_cnn"


def test_one_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_simple_cnn, **SMALL)


def test_saves_and_loads(tmp_path):
    assert_saves_and_loads(build_simple_cnn((28, 28, 1), 10, **SMALL), tmp_path)


def test_default_weight_decay_is_the_course_keras_l2_of_1e_4_on_the_convolutions():
    model = build_simple_cnn((32, 32, 3), 10)
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert len(model.losses) == len(kernels) == 6
    expected = 1e-4 * sum(float(np.sum(np.square(kernel.numpy()))) for kernel in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert model.get_layer("predictions").kernel_regularizer is None


def test_no_weight_decay_means_no_penalty():
    model = build_simple_cnn((32, 32, 3), 10, weight_decay=0.0, **SMALL)
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert not model.losses


def test_one_stage_per_filter_count_with_its_dropout_rate():
    model = build_simple_cnn((48, 48, 1), 7, filters=(8, 16), dropout=(0.1, 0.5))
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [conv.filters for conv in convs] == [8, 8, 16, 16]
    assert [layer.rate for layer in model.layers if isinstance(layer, layers.Dropout)] == [0.1, 0.5]
    assert isinstance(model.get_layer("stage1_1_elu"), layers.Activation)
    assert isinstance(model.get_layer("stage1_1_bn"), layers.BatchNormalization)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"filters": (32, 64)}, r"filters=\[32, 64\], dropout=\[0.2, 0.3, 0.4\]"),
        ({"filters": ()}, r"filters=\(\)"),
        ({"filters": (32, 0, 128)}, r"filters=\(32, 0, 128\)"),
        ({"dropout": (0.2, 0.3, 1.0)}, r"dropout=\[0.2, 0.3, 1.0\]"),
    ],
)
def test_rejects_invalid_hyperparameters(hp, message):
    with pytest.raises(ValueError, match=message):
        build_simple_cnn((32, 32, 3), 10, **hp)


def test_too_many_poolings_for_the_input_raise():
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, 1\) is too small for 5 2x2 poolings"):
        build_simple_cnn((28, 28, 1), 10, filters=(4, 4, 4, 4, 4), dropout=(0.1,) * 5)


def test_model_can_be_renamed():
    assert build_simple_cnn((28, 28, 1), 10, name="course_cnn", **SMALL).name == "course_cnn"
