import keras
import numpy as np
import pytest

from convbench.training.augmentation import (
    RandomPadCrop,
    augmentation_layers,
    crop_windows,
    pad_images,
    with_augmentation,
)

pytestmark = pytest.mark.backends  # `make test` runs these under JAX too
as_numpy = keras.ops.convert_to_numpy


def windows_of(padded: np.ndarray, image: np.ndarray, size: int) -> list[tuple[int, int]]:
    span = padded.shape[0] - size + 1
    return [
        (dy, dx)
        for dy in range(span)
        for dx in range(span)
        if np.array_equal(padded[dy : dy + size, dx : dx + size], image)
    ]


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_the_windows_are_the_ones_numpy_slices_at_the_given_offsets(mode):
    images = np.random.default_rng(2).integers(0, 256, (5, 7, 6, 3)).astype("float32")
    offset_y, offset_x = np.array([0, 4, 2, 1, 3], "int32"), np.array([4, 0, 3, 2, 1], "int32")
    windows = as_numpy(crop_windows(pad_images(images, 2, mode), offset_y, offset_x, (7, 6)))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode=mode)
    manual = [image[dy : dy + 7, dx : dx + 6] for image, dy, dx in zip(padded, offset_y, offset_x)]
    np.testing.assert_array_equal(windows, np.stack(manual))


def test_pad_crop_returns_a_window_of_the_zero_padded_image():
    images = np.random.default_rng(0).integers(1, 256, (16, 32, 32, 3)).astype("float32")
    cropped = as_numpy(RandomPadCrop(4, seed=3)(images, training=True))
    offsets = []
    for image, out in zip(images, cropped):
        found = windows_of(np.pad(image, ((4, 4), (4, 4), (0, 0))), out, 32)
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 4, "every image draws its own offset"


def test_reflect_pad_crop_returns_a_window_of_the_reflected_image():
    images = np.random.default_rng(1).integers(1, 256, (16, 32, 32, 3)).astype("float32")
    cropped = as_numpy(RandomPadCrop(2, seed=3, mode="reflect")(images, training=True))
    for image, out in zip(images, cropped):
        assert len(windows_of(np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect"), out, 32)) == 1
    assert (cropped > 0).all(), "no zero border"
    layers = augmentation_layers({"pad_crop": 2, "pad_mode": "reflect"}, seed=0)
    assert layers[0].get_config()["mode"] == "reflect"
    with pytest.raises(ValueError, match="pad_mode"):
        RandomPadCrop(2, mode="wrap")


def test_pad_crop_offsets_cover_all_81_positions_uniformly_enough():
    marker = np.zeros((4000, 9, 9, 1), dtype="float32")
    marker[:, 4, 4, 0] = 1  # single bright pixel in the centre; its new place reveals the offset
    out = as_numpy(RandomPadCrop(4, seed=0)(marker, training=True))[..., 0]
    positions = np.argwhere(out == 1)[:, 1:]
    counts = np.zeros((9, 9))
    np.add.at(counts, tuple(positions.T), 1)
    assert counts.min() > 0.4 * 4000 / 81 and counts.max() < 1.6 * 4000 / 81


def test_pad_crop_is_identity_at_inference():
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(as_numpy(RandomPadCrop(4)(images, training=False)), images)


def test_augmented_training_model_predicts_like_the_plain_model_at_inference():
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)), name="plain")
    trainer = with_augmentation(model, {"pad_crop": 2, "horizontal_flip": True}, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(trainer.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)
    assert trainer.get_layer(model.name) is model


def test_alternating_flips_are_no_layer_of_the_model_the_input_pipeline_mirrors_instead():
    layers_of = {
        flip: [layer.name for layer in augmentation_layers({"pad_crop": 2, "horizontal_flip": flip}, seed=0)]
        for flip in (True, "alternating", False)
    }
    assert layers_of == {
        True: ["random_pad_crop", "random_flip"],
        "alternating": ["random_pad_crop"],
        False: ["random_pad_crop"],
    }


def test_unknown_augmentation_option_is_refused():
    with pytest.raises(ValueError, match="cutout"):
        augmentation_layers({"cutout": 8}, seed=0)
