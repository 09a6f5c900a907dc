"""The metric contract: `<architecture>.<metric>` keys, metric names and kedro-mlflow's metric form."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

from convbench.metrics import (
    HISTORY_COLUMNS,
    RANKING_METRIC,
    SUMMARY_METRICS,
    history_column,
    is_test_metric,
    metric_key,
    metrics_by_architecture,
    order_test_metrics,
    parse_metric_key,
    to_mlflow_metrics,
)

CATALOG = Path(__file__).parents[1] / "conf" / "base" / "catalog.yml"


def test_a_key_parses_back_to_its_architecture_and_metric():
    assert metric_key("mobilenet_v2_imagenet", "val_accuracy") == "mobilenet_v2_imagenet.val_accuracy"
    assert parse_metric_key(metric_key("resnet", "test_macro_f1")) == ("resnet", "test_macro_f1")


@pytest.mark.parametrize(
    "key",
    ["node_time_s.cifar10.resnet.train_model", "ferplus.dropped.train.no_majority", "resnet", ".loss", "resnet."],
)
def test_keys_of_other_things_are_no_architectures_metric(key):
    assert parse_metric_key(key) is None


@pytest.mark.parametrize(("architecture", "metric"), [("cifar10.resnet", "loss"), ("", "loss"), ("resnet", "")])
def test_a_key_that_would_not_parse_back_is_refused(architecture, metric):
    with pytest.raises(ValueError, match="non-empty"):
        metric_key(architecture, metric)


def test_a_runs_metrics_are_grouped_by_architecture_other_keys_left_out():
    metrics = {
        "resnet.test_accuracy": 0.9,
        "resnet.loss": 0.3,
        "mlp.test_accuracy": 0.5,
        "node_time_s.cifar10.resnet.train_model": 12.0,
    }
    assert metrics_by_architecture(metrics) == {
        "resnet": {"test_accuracy": 0.9, "loss": 0.3},
        "mlp": {"test_accuracy": 0.5},
    }


def test_test_metrics_are_ordered_ranking_metric_first_then_by_name():
    names = ["train_loss", "test_top5_accuracy", "test_loss", "test_", "test_accuracy", "test_macro_f1", "test_loss"]
    assert order_test_metrics(names) == [RANKING_METRIC, "test_loss", "test_macro_f1", "test_top5_accuracy"]
    assert order_test_metrics(["test_macro_f1"]) == ["test_macro_f1"]
    assert is_test_metric("test_accuracy") and not is_test_metric("test_") and not is_test_metric("val_accuracy")


def test_history_columns_name_train_and_validation_curves():
    assert HISTORY_COLUMNS == (
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "train_objective",
        "l2_penalty",
    )
    assert history_column("lr") == "train_lr"


def test_values_take_kedro_mlflows_form():
    assert to_mlflow_metrics({"parameters": 269722, "test_accuracy": 0.5}) == {
        "parameters": {"value": 269722.0, "step": 0},
        "test_accuracy": {"value": 0.5, "step": 0},
    }
    assert isinstance(to_mlflow_metrics({"epochs": 2})["epochs"]["value"], float)


def test_the_catalogs_metric_datasets_log_the_same_keys(mlflow_run):
    """The catalog's `prefix: "{architecture}"` makes kedro-mlflow log `metric_key(architecture, name)`."""
    catalog = yaml.safe_load(CATALOG.read_text())
    for entry in ("{dataset}.{architecture}.test_metrics", "{dataset}.{architecture}.summary_metrics"):
        assert catalog[entry]["type"] == "kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset", entry
        assert catalog[entry]["prefix"] == "{architecture}", entry
    MlflowMetricsHistoryDataset(prefix="resnet").save(
        to_mlflow_metrics({"test_macro_f1": 0.25, **dict.fromkeys(SUMMARY_METRICS, 1)})
    )
    logged = mlflow.get_run(mlflow_run.info.run_id).data.metrics
    assert metrics_by_architecture(logged) == {"resnet": {"test_macro_f1": 0.25, **dict.fromkeys(SUMMARY_METRICS, 1.0)}}


def test_the_contract_imports_nothing_heavy():
    code = (
        "import sys, convbench.metrics; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'pandas', 'keras', 'tensorflow', 'matplotlib', 'mlflow', 'kedro'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
