import numpy as np
import pytest

from convbench.training.tta import enabled, shifted, tta_views


def image_batch():
    return np.arange(2 * 4 * 5 * 1, dtype=np.uint8).reshape(2, 4, 5, 1)


def test_a_shift_moves_the_content_and_reflects_into_the_border():
    images = image_batch()
    moved = shifted(images, 1, 2)
    np.testing.assert_array_equal(moved[:, 1:, 2:], images[:, :-1, :-2])  # content moved down 1, right 2
    np.testing.assert_array_equal(moved[:, 0, 2:], images[:, 1, :-2])  # reflected row
    np.testing.assert_array_equal(shifted(images, -1, -1)[:, :-1, :-1], images[:, 1:, 1:])
    assert shifted(images, 0, 0) is images


def test_views_are_the_images_flips_and_their_shifts():
    images = image_batch()
    assert len(tta_views(images, {})) == 1 and not enabled({}) and not enabled(None)
    flip = tta_views(images, {"flip": True})
    assert len(flip) == 2 and np.array_equal(flip[1], images[:, :, ::-1])
    both = tta_views(images, {"flip": True, "translate": 1})
    assert len(both) == 6 and enabled({"translate": 1})
    np.testing.assert_array_equal(both[5], shifted(images[:, :, ::-1], -1, -1))


@pytest.mark.parametrize("tta", [{"rotate": 90}, {"translate": -1}, {"translate": 4}])
def test_unknown_or_impossible_views_are_refused(tta):
    with pytest.raises(ValueError, match="tta"):
        tta_views(image_batch(), tta)
