import keras
import numpy as np
import pytest

from convbench.models.preprocessing import with_normalization
from convbench.models.registry import ARCHITECTURES, get_builder
from convbench.models.resnet import blocks_per_stage, build_resnet


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


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
    with pytest.raises(ValueError, match="Known architectures: .*resnet"):
        get_builder("resnot")
