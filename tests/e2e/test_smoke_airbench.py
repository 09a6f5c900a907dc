"""`cifar10_airbench` in the smoke env from a file:// mirror: the whitening layer set from the training
split, EMA weights, test accuracy with and without TTA side by side, and a run-wide training budget
in minutes (`--params=training.budget.minutes=...`)."""

from __future__ import annotations

import json

import cifar_archives
import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro_project import assert_ran, new_project, run_kedro

from convbench.models.airbench import WHITENING_LAYER

pytestmark = pytest.mark.e2e
BUDGET_MINUTES = 0.3


@pytest.fixture(scope="module")
def airbench_run(tmp_path_factory):
    project = new_project(tmp_path_factory)
    params = [
        *cifar_archives.file_mirror_params(tmp_path_factory.mktemp("mirror")),
        "training.airbench.ema.decay=0.9",
        f"training.budget.minutes={BUDGET_MINUTES}",
    ]
    result = assert_ran(run_kedro(project, "--pipelines=cifar10_airbench", params))
    return project, result.stdout + result.stderr


def test_a_run_budget_is_calibrated_into_epochs_and_they_and_the_budget_go_to_mlflow(airbench_run):
    project, log = airbench_run
    assert "Budget calibration:" in log  # the timed steps, then the epochs that fit
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar10").experiment_id])
    metrics = run.data.metrics
    assert metrics["airbench.budget_minutes"] == BUDGET_MINUTES and metrics["airbench.budget_overrun_s"] >= 0
    epochs = client.get_metric_history(run.info.run_id, "airbench.val_accuracy")
    assert metrics["airbench.epochs"] == len(epochs) >= 1  # the calibrated epochs were trained
    rates = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "airbench.lr"), key=lambda m: m.step)]
    # the budget's linear decay ends at zero after the last calibrated epoch, however many fitted on
    # this machine (the recipe's own triangular schedule would end at 0.07 x its peak of 1.5)
    assert len(rates) == len(epochs) and rates[-1] == pytest.approx(0.0, abs=1e-7)
    table = pd.read_csv(project / "data/smoke/08_reporting/cifar10/airbench/metrics.csv")
    assert table.loc[0, "budget_minutes"] == BUDGET_MINUTES and table.loc[0, "epochs"] == len(epochs)


def test_the_table_mlflow_and_evaluation_keep_both_test_accuracies(airbench_run):
    project, _ = airbench_run
    table = pd.read_csv(project / "data/smoke/08_reporting/cifar10/airbench/metrics.csv")
    assert {"test_accuracy", "test_tta_accuracy", "test_tta_loss"} <= set(table.columns)
    evaluation = json.loads((project / "data/smoke/07_model_output/cifar10/airbench/evaluation.json").read_text())
    assert evaluation["metrics"]["test_tta_accuracy"] == pytest.approx(table.loc[0, "test_tta_accuracy"])
    plain = np.load(project / "data/smoke/07_model_output/cifar10/airbench/test_probabilities.npy")
    tta = np.load(project / "data/smoke/07_model_output/cifar10/airbench/test_tta_probabilities.npy")
    assert plain.shape == tta.shape == (256, 10) and not np.allclose(plain, tta)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar10").experiment_id])
    assert run.data.metrics["airbench.test_tta_accuracy"] == pytest.approx(table.loc[0, "test_tta_accuracy"])
    assert run.data.metrics["airbench.test_accuracy"] == pytest.approx(table.loc[0, "test_accuracy"])


def test_the_saved_model_holds_a_frozen_whitening_layer_set_from_the_data(airbench_run):
    project, _ = airbench_run
    (path,) = (project / "data/smoke/06_models/cifar10/airbench/model.keras").glob("*/model.keras")
    backbone = keras.saving.load_model(path).get_layer("airbench")
    whiten = backbone.get_layer(WHITENING_LAYER)
    kernel = whiten.get_weights()[0]
    assert not whiten.trainable and kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])  # eigenvectors and their negatives
    recipe = json.loads((project / "data/smoke/06_models/cifar10/airbench/recipe.json").read_text())
    assert recipe["ema"] == {"decay": 0.9} and recipe["tta"] == {"flip": True, "translate": 1}
    assert recipe["model"]["widths"] == [16, 32, 32] and recipe["epochs"] == 1  # the smoke env's shrink
    assert recipe["budget"] == {"minutes": BUDGET_MINUTES}  # the run's budget, which replaced those epochs
