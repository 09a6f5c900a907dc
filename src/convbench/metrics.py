"""The metric contract: metric names, the `<architecture>.<metric>` MLflow key, kedro-mlflow's metric form.

Every metric of one trained architecture lands in the MLflow run as `<architecture>.<metric>`
(`metric_key`), written in three ways that must agree:

- the per-epoch curves, by `convbench.training.callbacks.MlflowEpochLogger` (step = epoch);
- the test metrics of `evaluate_predictions` and the size/speed summary of `metrics_table`, by
  kedro-mlflow's `MlflowMetricsHistoryDataset` with `prefix: "{architecture}"` in
  conf/base/catalog.yml, which logs `{name: {value, step}}` (`to_mlflow_metrics`) as
  `<prefix>.<name>`, the same key;
and read back by the leaderboard and `predict` with `metrics_by_architecture` (`parse_metric_key`).

An architecture counts as trained in a run when the run holds `<architecture>.test_accuracy`
(`RANKING_METRIC`), which also ranks the leaderboard and picks `predict`'s model. Any metric whose
name starts with `test_` (`TEST_PREFIX`) is a test metric: `evaluate_predictions` may add one and
it reaches the metrics table, MLflow and the leaderboard with no other edit.

Plain Python only: this module is imported by the Keras callbacks and the reporting nodes alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

METRICS_TABLE = "metrics_table"
"""The reporting pipeline's table of one trained architecture (`<dataset>.<architecture>.metrics_table`)."""

KEY_SEPARATOR = "."
"""Between the architecture and the metric in an MLflow key; neither name may hold one."""

PENALTY_METRIC = "l2_penalty"
"""The weights' L2 penalty at an epoch's end, apart from every loss (`convbench.training.losses`)."""

OBJECTIVE_METRIC = "objective"
"""What training minimised per epoch: the recipe's loss (label-smoothed if it says so) plus the penalty."""

HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", OBJECTIVE_METRIC, PENALTY_METRIC)
"""Per-epoch curves of `fit`'s history, logged every epoch; the tables show the last epoch's value.

`loss` and `val_loss` are the data loss (cross-entropy against the labels, no smoothing, no
penalty), the same quantity as `test_loss`, so the three compare."""

SIZE_METRICS = ("parameters", "epochs")
"""Counts from the training summary (trainable parameters, epochs trained), read back as integers."""

SPEED_METRICS = ("wall_time_s", "train_images_per_s")
"""Time and throughput from the training summary."""

SUMMARY_METRICS = SIZE_METRICS + SPEED_METRICS
"""The training summary's metrics that the reporting logs to MLflow, for the leaderboard to read back."""

BUDGET_METRICS = ("budget_minutes", "budget_epochs", "budget_overrun_s", "epoch_fraction")
"""A budgeted training's budget (in minutes or in epochs), by how many seconds it overran, and the
fraction of one epoch it trained when not one epoch fitted; only budgeted trainings log them (NaN in
tables otherwise, and `epoch_fraction` only when it trained less than an epoch)."""

NO_BUDGET = "recipe"
"""The leaderboard's budget of a training without one: the recipe's own epochs."""


def budget_label(minutes: float | None, epochs: float | None) -> str:
    """The leaderboard's budget column: `10 min`, `20 epochs`, or `NO_BUDGET`."""
    if minutes is not None and not math.isnan(minutes):
        return f"{minutes:g} min"
    if epochs is not None and not math.isnan(epochs):
        return f"{int(epochs)} epochs"
    return NO_BUDGET


TEST_PREFIX = "test_"
"""Every metric of the test split is named `test_<something>`."""

RANKING_METRIC = "test_accuracy"
"""The test metric that marks an architecture as trained in a run, ranks the leaderboard and picks `predict`'s model."""


def metric_key(architecture: str, metric: str) -> str:
    """The MLflow key `<architecture>.<metric>`.

    Raises:
        ValueError: A name is empty or holds the separator (the key would not parse back).
    """
    for kind, name in (("architecture", architecture), ("metric", metric)):
        if not name or KEY_SEPARATOR in name:
            raise ValueError(f"An MLflow metric key needs a non-empty {kind} name without {KEY_SEPARATOR!r}: {name!r}")
    return f"{architecture}{KEY_SEPARATOR}{metric}"


def parse_metric_key(key: str) -> tuple[str, str] | None:
    """`(architecture, metric)` of a key `metric_key` made; None for any other key.

    Other keys of a run (e.g. `node_time_s.<namespace>.<node>`, `<dataset>.dropped.<split>.<reason>`)
    hold more than one separator and are no architecture's.
    """
    architecture, separator, metric = key.partition(KEY_SEPARATOR)
    if not separator or not architecture or not metric or KEY_SEPARATOR in metric:
        return None
    return architecture, metric


def metrics_by_architecture(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """A run's metrics (`run.data.metrics`: key -> latest value) grouped as `{architecture: {metric: value}}`.

    Keys that are not `<architecture>.<metric>` are left out.
    """
    grouped: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed is not None:
            architecture, metric = parsed
            grouped.setdefault(architecture, {})[metric] = value
    return grouped


def is_test_metric(name: str) -> bool:
    """Whether `name` is a metric of the test split (`test_<something>`)."""
    return name.startswith(TEST_PREFIX) and len(name) > len(TEST_PREFIX)


def order_test_metrics(names: Iterable[str]) -> list[str]:
    """The test metrics among `names`, once each: `RANKING_METRIC` first, then the others sorted by name."""
    found = {name for name in names if is_test_metric(name)}
    return [name for name in (RANKING_METRIC,) if name in found] + sorted(found - {RANKING_METRIC})


def history_column(metric: str) -> str:
    """The table column of a history metric's last value: `loss` -> `train_loss`; `val_loss` and `l2_penalty` stay."""
    return metric if metric.startswith("val_") or metric == PENALTY_METRIC else f"train_{metric}"


HISTORY_COLUMNS = tuple(history_column(metric) for metric in HISTORY_METRICS)
"""`train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `train_objective`, `l2_penalty`."""


def to_mlflow_metrics(values: Mapping[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """`{name: value}` in the form kedro-mlflow's `MlflowMetricsHistoryDataset` saves: `{name: {value, step}}`."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}
