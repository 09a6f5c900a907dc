import numpy as np
import pytest
from tiny_training import RECIPE

from convbench.metrics import is_test_metric
from convbench.pipelines.training.nodes import build_model, evaluate_predictions


def one_hot_probabilities(predicted, classes, confidence=0.9):
    probabilities = np.full((len(predicted), classes), (1 - confidence) / (classes - 1), dtype=np.float32)
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def test_evaluation_metrics_confusion_matrix_and_per_class_accuracy():
    labels = np.array([0, 0, 1, 1, 2, 2, 9])  # index 6 is outside the evaluated split
    indices = np.arange(6)
    predicted = np.array([0, 1, 1, 1, 2, 0])
    no_tta = np.zeros((0, 3), dtype=np.float32)
    metrics, evaluation = evaluate_predictions(
        one_hot_probabilities(predicted, 3), no_tta, labels, indices, ["a", "b", "c"]
    )
    assert metrics["test_accuracy"] == {"value": pytest.approx(4 / 6), "step": 0}
    assert metrics["test_loss"]["value"] == pytest.approx(-(4 * np.log(0.9) + 2 * np.log(0.05)) / 6, rel=1e-5)
    assert "test_top5_accuracy" not in metrics and "test_tta_accuracy" not in metrics
    assert all(map(is_test_metric, metrics)) and evaluation["metrics"] == {k: v["value"] for k, v in metrics.items()}
    assert evaluation["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert evaluation["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 0.5}


def test_top5_accuracy_is_reported_for_many_classes():
    classes = 100
    labels = np.array([3, 7])
    probabilities = np.zeros((2, classes), dtype=np.float32)
    probabilities[0, [10, 11, 12, 13, 3]] = [0.3, 0.2, 0.2, 0.2, 0.1]  # true class 5th best
    probabilities[1, [10, 11, 12, 13, 14, 7]] = [0.2, 0.2, 0.2, 0.2, 0.15, 0.05]  # 6th best
    no_tta = np.zeros((0, classes), dtype=np.float32)
    metrics, _ = evaluate_predictions(probabilities, no_tta, labels, np.arange(2), [str(i) for i in range(classes)])
    assert metrics["test_top5_accuracy"]["value"] == pytest.approx(0.5)
    assert metrics["test_accuracy"]["value"] == 0.0


def test_built_model_takes_raw_images_and_has_one_output_per_class():
    recipe = {"model": {"depth": 8}, "seed": 0}
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    model = build_model(images, np.arange(4), ["x"] * 7, {"mean": [120.0] * 3, "std": [60.0] * 3}, recipe, "resnet")
    assert model.input.dtype == "uint8" and model.output.shape[-1] == 7
    assert model.predict(images, verbose=0).shape == (4, 7)


def test_the_recipe_seed_fixes_the_initial_weights():
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)

    def weights(seed):
        recipe = {"model": {"depth": 8}, "seed": seed}
        return build_model(
            images, np.arange(4), ["x"] * 3, {"mean": [0.0] * 3, "std": [1.0] * 3}, recipe, "resnet"
        ).get_weights()

    first, again, other = weights(0), weights(0), weights(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_dataset_overrides_merge_into_the_recipe_key_by_key_and_run_settings_win():
    from convbench.pipelines.training.nodes import resolve_recipe

    recipe = {**RECIPE, "epochs": 10, "augmentation": {"pad_crop": 4, "horizontal_flip": True}, "model": {"depth": 20}}
    resolved = resolve_recipe(recipe, {"augmentation": {"horizontal_flip": False}, "epochs": 3}, None)
    assert resolved == {**recipe, "epochs": 3, "augmentation": {"pad_crop": 4, "horizontal_flip": False}}
    assert recipe["augmentation"]["horizontal_flip"] is True  # the parameter itself is left as it was
    assert resolve_recipe(recipe, None, None) == recipe == resolve_recipe(recipe, {}, {})
    run = resolve_recipe(
        recipe, {"augmentation": {"horizontal_flip": False}}, {"augmentation": {"horizontal_flip": True}}
    )
    assert run["augmentation"] == {"pad_crop": 4, "horizontal_flip": True}  # --params / conf/local beat the dataset
    assert resolve_recipe(recipe, None, None, label_mode="probability")["label_mode"] == "probability"


def test_tta_accuracy_is_kept_next_to_the_plain_one():
    labels = np.array([0, 1, 2, 2])
    plain = one_hot_probabilities(np.array([0, 1, 0, 0]), 3)  # 2 of 4 right
    tta = one_hot_probabilities(np.array([0, 1, 2, 0]), 3, confidence=0.8)  # 3 of 4 right
    metrics, evaluation = evaluate_predictions(plain, tta, labels, np.arange(4), ["a", "b", "c"])
    assert metrics["test_accuracy"]["value"] == 0.5 and metrics["test_tta_accuracy"]["value"] == 0.75
    assert metrics["test_tta_loss"]["value"] == pytest.approx(-(3 * np.log(0.8) + np.log(0.1)) / 4, rel=1e-5)
    assert evaluation["confusion_matrix"][2] == [2, 0, 0]  # the plain predictions'


def test_predict_test_set_averages_the_softmax_over_the_tta_views():
    from convbench.pipelines.training.nodes import predict_test_set
    from convbench.training.tta import shifted

    model = build_model(
        np.zeros((1, 8, 8, 3), np.uint8),
        np.arange(1),
        ["x"] * 4,
        {"mean": [0.0] * 3, "std": [1.0] * 3},
        {"model": {"units": 8, "hidden_layers": 1}},
        "mlp",
    )
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    recipe = {"eval_batch_size": 2, "tta": {"flip": True, "translate": 1}}
    plain, tta = predict_test_set(model, images, np.array([4, 0, 2]), recipe)
    chosen = images[[4, 0, 2]]
    flipped = chosen[:, :, ::-1]
    views = [
        chosen,
        flipped,
        shifted(chosen, 1, 1),
        shifted(chosen, -1, -1),
        shifted(flipped, 1, 1),
        shifted(flipped, -1, -1),
    ]
    weights = [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8]  # the unshifted views hold half the weight
    by_hand = sum(w * model.predict(np.ascontiguousarray(v), verbose=0) for w, v in zip(weights, views, strict=True))
    np.testing.assert_allclose(plain, model.predict(chosen, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(tta, by_hand, rtol=1e-5, atol=1e-7)
    assert not np.allclose(tta, plain)  # the views differ, so the average does
    _, none = predict_test_set(model, images, np.arange(5), {"eval_batch_size": 2})
    assert none.shape == (0, 4)
