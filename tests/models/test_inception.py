import keras
import pytest
from models.builder_checks import (
    INPUT_SHAPES,
    assert_one_step_lowers_the_loss,
    assert_probabilities_for,
    assert_saves_and_loads,
    trainable_parameters,
)

from convbench.models.inception import STAGES, build_inception

SMALL = {"width": 0.125}
"""GoogLeNet keeps 32x32 resolution through two Inception modules: full width is far too slow for CPU tests."""

PYTORCH_CIFAR_GOOGLENET_PARAMETERS = 6_166_250
"""kuangliu/pytorch-cifar models/googlenet.py (README: 6.17 M): conv weights and biases, BN gamma and beta,
Linear(1024, 10), summed module by module."""


@pytest.fixture(scope="module")
def googlenet() -> keras.Model:
    return build_inception((32, 32, 3), 10)


def test_parameter_count_matches_pytorch_cifar_googlenet(googlenet):
    assert trainable_parameters(googlenet) == PYTORCH_CIFAR_GOOGLENET_PARAMETERS
    assert googlenet.name == "inception"


def test_module_outputs_have_the_paper_channel_counts_and_resolutions(googlenet):
    expected = {"inception3b": (32, 480), "inception4e": (16, 832), "inception5b": (8, 1024)}
    for module, (size, channels) in expected.items():
        assert googlenet.get_layer(f"{module}_concat").output.shape == (None, size, size, channels)
    assert [filters.output_channels for _, filters in STAGES[-1]] == [832, 1024]


def test_convolutions_have_biases_as_in_pytorch_cifar(googlenet):
    convolutions = [layer for layer in googlenet.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 1 + 9 * 7
    assert all(layer.use_bias for layer in convolutions)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_outputs_class_probabilities_for_every_input_shape(input_shape):
    model = assert_probabilities_for(build_inception, input_shape, num_classes=7, **SMALL)
    last_size = -(-input_shape[0] // 4)
    assert model.get_layer("inception5b_concat").output.shape[1:3] == (last_size, last_size)


def test_one_training_step_lowers_the_loss():
    assert_one_step_lowers_the_loss(build_inception, batch_size=8, **SMALL)


def test_saves_and_loads_without_custom_objects(tmp_path):
    loaded = assert_saves_and_loads(build_inception((28, 28, 1), 3, name="tiny_inception", **SMALL), tmp_path)
    assert loaded.name == "tiny_inception"


def test_width_multiplies_every_filter_count():
    model = build_inception((32, 32, 3), 10, width=0.5)
    assert model.get_layer("stem_conv").filters == 96
    assert model.get_layer("inception3a_double3x3_reduce_conv").filters == 8
    assert model.get_layer("inception5b_concat").output.shape[-1] == 512
    assert model.get_layer("predictions").kernel.shape == (512, 10)
    assert 0.2 < trainable_parameters(model) / PYTORCH_CIFAR_GOOGLENET_PARAMETERS < 0.3  # about width squared


@pytest.mark.parametrize("width", [0, -0.5])
def test_width_must_be_positive(width):
    with pytest.raises(ValueError, match=f"width={width}"):
        build_inception((32, 32, 3), 10, width=width)


def test_weight_decay_adds_one_l2_penalty_per_kernel(googlenet):
    assert not googlenet.losses
    model = build_inception((32, 32, 3), 10, weight_decay=5e-4, **SMALL)
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert len(model.losses) == len(kernels) == 1 + 9 * 7 + 1
