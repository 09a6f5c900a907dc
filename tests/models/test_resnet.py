import keras
import numpy as np
import pytest
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
)

from convbench.models.preprocessing import with_normalization
from convbench.models.registry import ARCHITECTURES, get_builder
from convbench.models.resnet import blocks_per_stage, build_resnet
from convbench.training.fit import trainable_parameters


# He et al. 2016, Table 6: ResNet-20 0.27 M, ResNet-56 0.85 M, ResNet-110 1.7 M (option A shortcuts).
@pytest.mark.parametrize(
    ("depth", "expected"),
    [(20, 269_722), (56, 853_018), (110, 1_727_962)],
)
def test_parameter_counts_match_the_paper(depth, expected):
    model = build_resnet((32, 32, 3), 10, depth=depth)
    assert trainable_parameters(model) == expected


def test_output_is_a_probability_distribution_per_class():
    model = build_resnet((32, 32, 3), 100, depth=8)
    probabilities = model.predict(np.random.default_rng(0).random((3, 32, 32, 3), dtype="float32"), verbose=0)
    assert probabilities.shape == (3, 100)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_identity_shortcut_subsamples_and_zero_pads_channels():
    model = build_resnet((32, 32, 3), 10, depth=20)
    before = keras.Model(model.input, model.get_layer("stage1_block3_out").output)
    shortcut = keras.Model(model.input, model.get_layer("stage2_block1_0_identity").output)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype="float32")
    expected = before(x).numpy()[:, ::2, ::2, :]
    got = shortcut(x).numpy()
    np.testing.assert_allclose(got[..., :16], expected, rtol=1e-6)
    assert np.all(got[..., 16:] == 0)
    assert not model.get_layer("stage2_block1_0_identity").trainable


def test_projection_shortcut_adds_trainable_convolutions():
    identity = build_resnet((32, 32, 3), 10, depth=20)
    projection = build_resnet((32, 32, 3), 10, depth=20, shortcut="projection")
    assert trainable_parameters(projection) > trainable_parameters(identity)


@pytest.mark.parametrize("depth", [0, 19, 21, 7])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=f"depth={depth}"):
        blocks_per_stage(depth)


def test_weight_decay_adds_one_l2_penalty_per_kernel():
    model = build_resnet((32, 32, 3), 10, depth=8, weight_decay=5e-4)
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel") and layer.trainable]
    model(np.zeros((1, 32, 32, 3), dtype="float32"))
    assert len(model.losses) == len(kernels)


def test_normalising_wrapper_takes_uint8_and_applies_the_z_score():
    backbone = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten()], name="flat")
    model = with_normalization(backbone, mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 5.0])
    images = np.array([[[[12, 24, 35]] * 2] * 2], dtype=np.uint8)
    assert model.input.dtype == "uint8"
    np.testing.assert_allclose(model.predict(images, verbose=0)[0], [1.0, 1.0, 1.0] * 4, rtol=1e-5)


def test_normalising_wrapper_rejects_statistics_of_another_channel_count():
    backbone = build_resnet((32, 32, 3), 10, depth=8)
    with pytest.raises(ValueError, match="one value per channel"):
        with_normalization(backbone, mean=[0.5], std=[0.2])


def test_three_training_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    model = build_resnet((32, 32, 3), 10, depth=8)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, 32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_registry_resolves_names_and_lists_known_ones_on_error():
    assert get_builder("resnet") is build_resnet
    assert "resnet" in ARCHITECTURES
    with pytest.raises(ValueError, match=r"Known architectures: .*resnet"):
        get_builder("resnot")


# ResNet v2 (He et al. 2016b): pre-activation bottleneck blocks, depth 9n + 2.


def v2_trainable_parameters(n: int, channels: int, num_classes: int) -> int:
    """Hand count of a v2 ResNet: bias-free convs, BN gamma + beta, softmax weights + biases.

    Stem: 3x3 conv to 16 + BN. A bottleneck of width m on c input channels: pre-activation BN (2c,
    none in the very first block, which takes the stem's BN-ReLU), 1x1 conv c*m, BN 2m, 3x3 conv 9m^2,
    BN 2m, 1x1 conv m*4m; the first block of a stage adds a 1x1 projection c*4m. Final BN on 256.
    """
    total = 9 * channels * 16 + 2 * 16
    inputs = 16
    for width in (16, 32, 64):
        for block in range(n):
            preact = 0 if (width, block) == (16, 0) else 2 * inputs
            projection = inputs * 4 * width if block == 0 else 0
            total += preact + inputs * width + 2 * width + 9 * width**2 + 2 * width + 4 * width**2 + projection
            inputs = 4 * width
    return total + 2 * 256 + 256 * num_classes + num_classes


def test_v2_parameter_count_matches_the_paper():
    # He et al. 2016b, Table 3: pre-activation ResNet-164 (bottleneck) on CIFAR-10 has 1.7 M parameters.
    model = build_resnet((32, 32, 3), 10, depth=164, version=2)
    assert trainable_parameters(model) == v2_trainable_parameters(18, 3, 10) == 1_703_258
    assert abs(trainable_parameters(model) - 1.7e6) / 1.7e6 < 0.01


@pytest.mark.parametrize(("input_shape", "num_classes"), [((28, 28, 1), 10), ((48, 48, 1), 7)])
def test_v2_parameter_count_follows_the_hand_count(input_shape, num_classes):
    model = build_resnet(input_shape, num_classes, depth=29, version=2)
    assert trainable_parameters(model) == v2_trainable_parameters(3, input_shape[-1], num_classes)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("version", [1, 2])
def test_outputs_probabilities_for_every_input_shape(input_shape, version):
    depth = {1: 8, 2: 11}[version]
    assert_probabilities_for(build_resnet, input_shape, 7, depth=depth, version=version)


def test_v2_depth_sets_the_bottleneck_blocks_per_stage():
    model = build_resnet((32, 32, 3), 10, depth=29, version=2)
    names = {layer.name for layer in model.layers}
    assert {f"stage{s}_block3_add" for s in (1, 2, 3)} <= names
    assert not any("block4" in name for name in names)
    assert model.name == "resnet29v2"
    widths = [model.get_layer(f"stage{s}_block2_{i}_conv").filters for s in (1, 2, 3) for i in (1, 2, 3)]
    assert widths == [16, 16, 64, 32, 32, 128, 64, 64, 256]
    assert model.get_layer("stage3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("post_relu").output.shape[1:] == (8, 8, 256)


def test_v2_is_pre_activated_with_projections_from_the_shared_pre_activation():
    model = build_resnet((32, 32, 3), 10, depth=11, version=2)
    names = {layer.name for layer in model.layers}
    assert "stage1_block1_1_bn" not in names  # takes the stem's BN-ReLU
    for stage in (2, 3):
        activated = model.get_layer(f"stage{stage}_block1_1_relu").output
        assert model.get_layer(f"stage{stage}_block1_0_conv").input is activated
        assert model.get_layer(f"stage{stage}_block1_1_conv").input is activated
    assert {"stage1_block1_0_conv", "post_bn", "post_relu"} <= names


def test_v2_identity_shortcut_removes_the_projections():
    projection = build_resnet((32, 32, 3), 10, depth=11, version=2)
    identity = build_resnet((32, 32, 3), 10, depth=11, version=2, shortcut="identity")
    projections = 16 * 64 + 64 * 128 + 128 * 256
    assert trainable_parameters(projection) - trainable_parameters(identity) == projections
    assert not identity.get_layer("stage2_block1_0_identity").trainable


@pytest.mark.parametrize("depth", [8, 10, 21, 30, 165])
def test_v2_depth_must_be_9n_plus_2(depth):
    with pytest.raises(ValueError, match=rf"ResNet v2 depth must be 9n\+2.*Received: depth={depth}$"):
        build_resnet((32, 32, 3), 10, depth=depth, version=2)


def test_v1_depth_error_names_its_own_rule():
    with pytest.raises(ValueError, match=r"ResNet v1 depth must be 6n\+2.*Received: depth=29$"):
        build_resnet((32, 32, 3), 10, depth=29)


@pytest.mark.parametrize("version", [0, 3, "2"])
def test_unknown_version_is_rejected(version):
    with pytest.raises(ValueError, match=f"version={version!r}"):
        build_resnet((32, 32, 3), 10, depth=20, version=version)


def test_unknown_shortcut_is_rejected_for_v2():
    with pytest.raises(ValueError, match="shortcut='option_c'"):
        build_resnet((32, 32, 3), 10, depth=11, version=2, shortcut="option_c")


def test_v2_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_resnet, depth=11, version=2)


@pytest.mark.parametrize(("version", "shortcut"), [(1, "identity"), (2, "projection")])
def test_saves_and_loads_without_custom_objects(tmp_path, version, shortcut):
    model = build_resnet((28, 28, 1), 5, depth={1: 8, 2: 11}[version], version=version, shortcut=shortcut)
    loaded = assert_saves_and_loads(model, tmp_path)
    assert loaded.name == model.name
