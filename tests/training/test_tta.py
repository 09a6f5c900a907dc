import numpy as np
import pytest

from convbench.training.tta import enabled, predict_with_tta, shifted, tta_views, tta_weights


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


def test_weights_give_the_unshifted_views_half_when_translating():
    assert tta_weights({}) == [1.0]
    assert tta_weights({"flip": True}) == [0.5, 0.5]
    assert tta_weights({"flip": True, "translate": 1}) == [0.25, 0.25] + [0.125] * 4
    assert tta_weights({"translate": 2}) == [0.5, 0.25, 0.25]


class ColumnModel:
    """A stand-in with Keras' `predict`: 'probabilities' that depend on where each image is bright."""

    def predict(self, images, batch_size, verbose=0):
        weights = np.linspace(0.0, 1.0, images.shape[2])
        score = (images.astype(np.float64).mean(axis=(1, 3)) * weights).sum(axis=1)
        first = 1 / (1 + np.exp(-score / 50))
        return np.stack([first, 1 - first], axis=1).astype(np.float32)


def test_prediction_is_the_weighted_average_over_the_views():
    images = image_batch()
    model = ColumnModel()
    tta = {"flip": True, "translate": 1}
    views = tta_views(images, tta)
    manual = sum(
        weight * model.predict(view, batch_size=8) for view, weight in zip(views, tta_weights(tta), strict=True)
    )
    np.testing.assert_allclose(predict_with_tta(model, images, tta, batch_size=8), manual, rtol=1e-6)
    assert not np.allclose(manual, np.mean([model.predict(view, batch_size=8) for view in views], axis=0))
