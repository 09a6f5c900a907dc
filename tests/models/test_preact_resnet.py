import keras
import pytest
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.preact_resnet import build_preact_resnet


def hand_count(blocks_per_stage: int, channels: int, num_classes: int) -> int:
    """Trainable parameters by hand: bias-free convs, BN gamma + beta, softmax weights + biases.

    Stem: 3x3 conv from `channels` to 16 (9 * channels * 16). A block from c to f channels:
    BN on c (2c), 3x3 conv c -> f (9cf), BN on f (2f), 3x3 conv f -> f (9f^2), and in the first
    block of stages 2 and 3 a 1x1 projection c -> f (cf). Final BN on 64 (128), dense 64 -> classes.
    """
    total = 9 * channels * 16
    inputs = 16
    for filters in (16, 32, 64):
        for _ in range(blocks_per_stage):
            projection = inputs * filters if inputs != filters else 0
            total += 2 * inputs + 9 * inputs * filters + 2 * filters + 9 * filters**2 + projection
            inputs = filters
    return total + 2 * 64 + 64 * num_classes + num_classes


def test_default_parameter_count_follows_the_hand_count():
    # Stem 432; stage 1: 3 x 4,672; stage 2: 14,432 + 2 x 18,560; stage 3: 57,536 + 2 x 73,984; 128 + 650.
    model = build_preact_resnet((32, 32, 3), 10)
    assert trainable_parameters(model) == hand_count(3, 3, 10) == 272_282
    assert model.name == "preact_resnet20"


@pytest.mark.parametrize(("input_shape", "num_classes"), [((28, 28, 1), 10), ((48, 48, 1), 7)])
def test_parameter_count_on_grey_images(input_shape, num_classes):
    model = build_preact_resnet(input_shape, num_classes)
    assert trainable_parameters(model) == hand_count(3, 1, num_classes)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_probabilities_for_every_input_shape(input_shape):
    assert_probabilities_for(build_preact_resnet, input_shape, 7, blocks_per_stage=1)


@pytest.mark.parametrize("blocks", [1, 2, 5])
def test_blocks_per_stage_sets_the_number_of_residual_blocks(blocks):
    model = build_preact_resnet((32, 32, 3), 10, blocks_per_stage=blocks)
    additions = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(additions) == 3 * blocks
    assert trainable_parameters(model) == hand_count(blocks, 3, 10)
    assert model.name == f"preact_resnet{6 * blocks + 2}"


@pytest.mark.parametrize("blocks", [0, -1])
def test_blocks_per_stage_must_be_positive(blocks):
    with pytest.raises(ValueError, match=f"blocks_per_stage={blocks}"):
        build_preact_resnet((32, 32, 3), 10, blocks_per_stage=blocks)


def test_blocks_are_bn_elu_conv_with_projections_only_where_the_shape_changes():
    model = build_preact_resnet((32, 32, 3), 10, blocks_per_stage=2)
    names = {layer.name for layer in model.layers}
    assert {name for name in names if name.endswith("_0_conv")} == {"stage2_block1_0_conv", "stage3_block1_0_conv"}
    activated = model.get_layer("stage2_block1_1_elu").output
    assert model.get_layer("stage2_block1_0_conv").input is activated
    assert model.get_layer("stage2_block1_1_conv").input is activated
    activations = {layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation)}
    assert activations == {"elu"}
    assert model.get_layer("post_elu").output.shape[1:] == (8, 8, 64)


def test_default_weight_decay_is_the_courses_keras_l2_of_1e_4():
    model = build_preact_resnet((32, 32, 3), 10, blocks_per_stage=1)
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel") and layer.trainable]
    assert [layer.kernel_regularizer.l2 for layer in kernels] == pytest.approx([1e-4] * len(kernels))


def test_zero_weight_decay_adds_no_penalty():
    model = build_preact_resnet((32, 32, 3), 10, blocks_per_stage=1, weight_decay=0.0)
    model(keras.ops.zeros((1, 32, 32, 3)))
    assert model.losses == []


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_preact_resnet, blocks_per_stage=1)


def test_saves_and_loads_without_custom_objects(tmp_path):
    assert_saves_and_loads(build_preact_resnet((48, 48, 1), 7, blocks_per_stage=1), tmp_path)
