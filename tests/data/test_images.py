"""Tests for the shared image operations: batch resizing and grey-to-RGB."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.data.images import resize_image, resize_images, to_rgb


def test_resize_to_64_keeps_dtype_channels_and_constant_images():
    images = np.full((3, 48, 48, 1), 77, dtype=np.uint8)
    images[1] = 200
    resized = resize_images(images, 64)
    assert resized.shape == (3, 64, 64, 1) and resized.dtype == np.uint8
    assert set(np.unique(resized[0])) == {77} and set(np.unique(resized[1])) == {200}


def test_resize_down_averages_blocks_and_handles_rgb():
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[:, :2, :2] = 100  # top-left 2x2 block
    resized = resize_images(images, (2, 2))
    assert resized.shape == (2, 2, 2, 3)
    assert resized[0, 0, 0].tolist() == [100, 100, 100]
    assert resized[0, 1, 1].tolist() == [0, 0, 0]
    same = resize_images(images, 4)
    np.testing.assert_array_equal(same, images)
    assert same is not images
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, C\)"):
        resize_images(images[0], 2)


def test_a_batch_is_resized_exactly_as_each_image_alone():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 48, 48, 1), dtype=np.uint8)
    for size in ((64, 64), (32, 40)):
        resized = resize_images(images, size)
        for image, alone in zip(images, resized):
            np.testing.assert_array_equal(alone, resize_image(image, size))


def test_to_rgb_repeats_the_grey_channel():
    images = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48, 1)
    rgb = to_rgb(images)
    assert rgb.shape == (2, 48, 48, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], images[..., 0])
    assert to_rgb(rgb) is rgb
    with pytest.raises(ValueError, match="images must have shape"):
        to_rgb(np.zeros((2, 48, 48, 2), np.uint8))
