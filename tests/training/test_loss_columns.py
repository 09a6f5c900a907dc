"""The losses every table, curve and MLflow key shows are the data loss; the L2 penalty is its own column."""

import keras
import mlflow
import numpy as np
import pytest
from tiny_training import RECIPE, tiny_data

from convbench.models.preprocessing import with_normalization
from convbench.models.resnet import build_resnet
from convbench.pipelines.reporting.nodes import metrics_table
from convbench.pipelines.training.nodes import evaluate_predictions
from convbench.training.fit import fit
from convbench.training.losses import DataLoss, objective_description

WEIGHT_DECAY = 5e-3  # large, so that a loss with the penalty in it could not pass for one without


def decayed_model():
    keras.utils.set_random_seed(0)
    backbone = build_resnet((16, 16, 3), 3, depth=8, weight_decay=WEIGHT_DECAY)
    return with_normalization(backbone, [128.0] * 3, [64.0] * 3)


def hand_cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))))


def hand_l2_penalty(model: keras.Model) -> float:
    """sum(weight_decay / 2 * ||kernel||^2) over every regularised kernel (`convbench.models.layers.l2`)."""
    total = 0.0
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
        if getattr(layer, "kernel_regularizer", None) is not None:
            total += WEIGHT_DECAY / 2 * float(np.sum(np.square(keras.ops.convert_to_numpy(layer.kernel))))
    return total


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of a weight-decayed, label-smoothed training, logged to MLflow."""
    train, val = tiny_data(96, 0), tiny_data(48, 1)
    recipe = {**RECIPE, "epochs": 2}
    store = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{store}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment("losses", artifact_location=(store / "artifacts").as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            model, history, summary = fit(
                decayed_model(), train, val, 3, recipe, tmp_path_factory.mktemp("ckpt"), metric_prefix="resnet"
            )
    finally:
        mlflow.set_tracking_uri(None)
    return model, history, summary, val, mlflow.MlflowClient(tracking_uri).get_run(run.info.run_id)


def test_the_reported_val_loss_is_the_cross_entropy_computed_by_hand(trained):
    model, history, _, (val_images, val_labels), _ = trained
    probabilities = model.predict(val_images, verbose=0)
    assert history["val_loss"][-1] == pytest.approx(hand_cross_entropy(probabilities, val_labels), rel=1e-4)


def test_the_l2_penalty_is_logged_apart_and_is_the_penalty_computed_by_hand(trained):
    model, history, _, _, _ = trained
    penalty = hand_l2_penalty(model)
    assert penalty > 0.05  # not negligible next to the losses, so mixing them up would show
    assert history["l2_penalty"][-1] == pytest.approx(penalty, rel=1e-4)
    # The objective Keras minimised holds the penalty; the data loss does not.
    assert history["objective"][-1] > history["loss"][-1] + 0.5 * penalty


def test_val_and_test_loss_are_the_same_quantity(trained):
    """The validation images evaluated as a test split give the last epoch's val_loss as test_loss."""
    model, history, _, (val_images, val_labels), _ = trained
    probabilities = model.predict(val_images, verbose=0)
    _, evaluation = evaluate_predictions(
        probabilities, np.zeros((0, 3), np.float32), val_labels, np.arange(len(val_labels)), ["a", "b", "c"]
    )
    assert evaluation["metrics"]["test_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_mlflow_curves_and_the_metrics_table_show_the_same_losses(trained):
    _, history, summary, _, run = trained
    logged = run.data.metrics
    for name in ("loss", "val_loss", "l2_penalty", "objective"):
        assert logged[f"resnet.{name}"] == pytest.approx(history[name][-1], rel=1e-6)
    evaluation = {"metrics": {"test_loss": 0.5, "test_accuracy": 0.5}}
    table, markdown, _ = metrics_table(history, summary, evaluation, {"dataset": "toy", "architecture": "resnet"})
    row = table.iloc[0]
    assert row["val_loss"] == history["val_loss"][-1] and row["train_loss"] == history["loss"][-1]
    assert row["l2_penalty"] == history["l2_penalty"][-1] and row["train_objective"] == history["objective"][-1]
    assert "cross-entropy, label smoothing 0.1 + l2_penalty" in markdown


def test_the_objective_names_label_smoothing_and_the_penalty_only_when_used():
    assert objective_description({}, penalised=False) == "cross-entropy"
    assert (
        objective_description({"label_smoothing": 0.2}, penalised=True)
        == "cross-entropy, label smoothing 0.2 + l2_penalty"
    )
    assert objective_description({"label_mode": "multi_target"}, penalised=False) == "multi-target cross-entropy"


def test_the_data_loss_metric_ignores_label_smoothing_and_survives_a_save(tmp_path):
    targets = keras.utils.to_categorical([0, 1, 2], 3)
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
    metric = DataLoss()
    metric.update_state(targets, probabilities)
    assert float(metric.result()) == pytest.approx(hand_cross_entropy(probabilities, np.array([0, 1, 2])), rel=1e-6)
    restored = DataLoss.from_config(DataLoss(multi_target=True).get_config())
    assert restored.multi_target and restored.name == "data_loss"
