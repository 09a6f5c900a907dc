import keras
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

from convbench.models.mlp import build_mlp, build_residual_mlp, layers_in_each_block

SMALL_RESIDUAL = {"blocks": 2, "layers_per_block": 1, "units": 16}


# --- mlp ---------------------------------------------------------------------------------------


# The course's figures: 784*64+64 + 2*(64*64+64) + 64*10+10 = 59,210; with 3072 inputs 205,642.
@pytest.mark.parametrize(("input_shape", "expected"), [((28, 28, 1), 59_210), ((32, 32, 3), 205_642)])
def test_mlp_parameter_count_matches_the_course(input_shape, expected):
    model = build_mlp(input_shape, 10)
    assert trainable_parameters(model) == expected
    assert model.count_params() == expected


def course_sequential_mlp(input_shape, num_classes):
    return keras.Sequential(
        [keras.Input(shape=input_shape)]
        + [layers.Flatten()]
        + [layers.Dense(64, activation="relu") for _ in range(3)]
        + [layers.Dense(num_classes, activation="softmax")]
    )


def test_mlp_is_the_same_model_as_the_course_sequential_form():
    functional = build_mlp((28, 28, 1), 10)
    sequential = course_sequential_mlp((28, 28, 1), 10)
    assert sequential.count_params() == functional.count_params()
    functional_layers = [layer for layer in functional.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert [tuple(layer.output.shape) for layer in sequential.layers] == [
        tuple(layer.output.shape) for layer in functional_layers
    ]
    sequential.set_weights(functional.get_weights())
    images = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(sequential(images)), np.asarray(functional(images)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_mlp_gives_probabilities(input_shape):
    assert_probabilities_for(build_mlp, input_shape, 7)


def test_mlp_one_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_mlp, units=32, dropout=0.1)


def test_mlp_saves_and_loads(tmp_path):
    assert_saves_and_loads(build_mlp((28, 28, 1), 10, dropout=0.2, weight_decay=5e-4), tmp_path)


def test_mlp_depth_and_width_follow_the_hyperparameters():
    model = build_mlp((28, 28, 1), 10, units=32, hidden_layers=5)
    hidden = [layer for layer in model.layers if layer.name.startswith("hidden")]
    assert [layer.units for layer in hidden] == [32] * 5
    assert model.name == "mlp"
    assert build_mlp((28, 28, 1), 10, name="baseline").name == "baseline"


def test_mlp_dropout_follows_every_hidden_layer_only_when_asked():
    assert not [layer for layer in build_mlp((28, 28, 1), 10).layers if isinstance(layer, layers.Dropout)]
    dropouts = [layer for layer in build_mlp((28, 28, 1), 10, dropout=0.3).layers if isinstance(layer, layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.3] * 3


def test_mlp_weight_decay_penalises_every_kernel():
    model = build_mlp((28, 28, 1), 10, weight_decay=2e-4)
    model(np.zeros((1, 28, 28, 1), dtype="float32"))
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, layers.Dense)]
    assert len(model.losses) == 4
    expected = 1e-4 * sum(float(np.sum(np.square(kernel.numpy()))) for kernel in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"units": 0}, "units=0"),
        ({"hidden_layers": 0}, "hidden_layers=0"),
        ({"hidden_layers": 2.5}, "hidden_layers=2.5"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
    ],
)
def test_mlp_rejects_invalid_hyperparameters(hp, message):
    with pytest.raises(ValueError, match=message):
        build_mlp((28, 28, 1), 10, **hp)


# --- residual_mlp ------------------------------------------------------------------------------


# The course's MNIST figures (totals, BN moving statistics included): stem 100,480 + classifier
# 1,290; per block a 16,512 projection + 17,024 per Dense(128)-BN layer.
def test_residual_mlp_default_is_the_course_single_block():
    model = build_residual_mlp((28, 28, 1), 10)
    assert model.count_params() == 152_330
    assert trainable_parameters(model) == 151_818


def test_residual_mlp_blocks_of_one_and_three_layers_match_the_course():
    model = build_residual_mlp((28, 28, 1), 10, blocks=2, layers_per_block=[1, 3])
    assert model.count_params() == 202_890


def test_residual_mlp_ten_blocks_are_within_one_percent_of_the_course():
    # No uniform structure fits the course's 441,226 exactly (see the module docstring);
    # ten one-layer blocks give 437,130.
    model = build_residual_mlp((28, 28, 1), 10, blocks=10, layers_per_block=1)
    assert model.count_params() == 437_130
    assert model.count_params() == pytest.approx(441_226, rel=0.01)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_residual_mlp_gives_probabilities(input_shape):
    assert_probabilities_for(build_residual_mlp, input_shape, 7, **SMALL_RESIDUAL)


def test_residual_mlp_one_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_residual_mlp, **SMALL_RESIDUAL)


def test_residual_mlp_saves_and_loads(tmp_path):
    assert_saves_and_loads(build_residual_mlp((28, 28, 1), 10, weight_decay=5e-4, **SMALL_RESIDUAL), tmp_path)


def test_residual_mlp_builds_one_skip_addition_per_block_with_the_layers_asked():
    model = build_residual_mlp((28, 28, 1), 10, blocks=3, layers_per_block=[1, 2, 4], units=16)
    additions = [layer.name for layer in model.layers if isinstance(layer, layers.Add)]
    assert additions == ["block1_add", "block2_add", "block3_add"]
    dense_per_block = [
        len([layer for layer in model.layers if layer.name.startswith(f"block{b}_") and layer.name.endswith("_dense")])
        for b in (1, 2, 3)
    ]
    assert dense_per_block == [1, 2, 4]
    assert model.name == "residual_mlp"


def test_residual_mlp_units_set_every_block_width():
    model = build_residual_mlp((28, 28, 1), 10, units=48, blocks=2)
    widths = {layer.units for layer in model.layers if isinstance(layer, layers.Dense) and layer.name != "predictions"}
    assert widths == {48}


def test_residual_mlp_dropout_is_optional():
    def rates(**hp):
        model = build_residual_mlp((28, 28, 1), 10, **hp)
        return [layer.rate for layer in model.layers if isinstance(layer, layers.Dropout)]

    assert rates(dropout=0.0) == []
    assert rates(dropout=0.4, blocks=2, layers_per_block=1) == [0.4, 0.4]


def test_layers_per_block_accepts_one_count_or_one_per_block():
    assert layers_in_each_block(3, 2) == [2, 2, 2]
    assert layers_in_each_block(2, [1, 3]) == [1, 3]


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"blocks": 0}, "blocks=0"),
        ({"blocks": 3, "layers_per_block": [1, 3]}, r"blocks=3, layers_per_block=\[1, 3\]"),
        ({"layers_per_block": 0}, "layers_per_block=0"),
        ({"layers_per_block": 2.0}, "layers_per_block=2.0"),
        ({"blocks": 2, "layers_per_block": [2, 0]}, r"layers_per_block=\[2, 0\]"),
        ({"units": -4}, "units=-4"),
        ({"dropout": 1.5}, "dropout=1.5"),
    ],
)
def test_residual_mlp_rejects_invalid_hyperparameters(hp, message):
    with pytest.raises(ValueError, match=message):
        build_residual_mlp((28, 28, 1), 10, **hp)
