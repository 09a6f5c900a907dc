"""Tables and figures that summarise one training run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from convbench.metrics import (
    BUDGET_METRICS,
    HISTORY_METRICS,
    SIZE_METRICS,
    SPEED_METRICS,
    SUMMARY_METRICS,
    history_column,
    to_mlflow_metrics,
)

SAMPLE_GRID = 4  # the sample-prediction figure shows SAMPLE_GRID x SAMPLE_GRID test images


def metrics_table(
    history: dict[str, list[float]],
    training_summary: dict[str, Any],
    evaluation: dict[str, Any],
    run: dict[str, str],
) -> tuple[pd.DataFrame, str, dict[str, dict[str, float]]]:
    """One row per run: final train/val loss and accuracy, test metrics, size, epochs and time.

    The losses of every split are the same quantity, the data loss (cross-entropy against the
    labels); `train_objective` (what training minimised) and `l2_penalty` are columns of their own,
    and the Markdown table ends with a line that says what each is (`loss_note`).

    Args:
        history: Per-epoch `HISTORY_METRICS` (`loss`, `accuracy`, `val_loss`, `val_accuracy`,
            `objective`, `l2_penalty`; NaN for one a checkpoint from before it lacks).
        training_summary: `parameters`, `epochs`, `wall_time_s`, `train_images_per_s`, `objective`
            (what training minimised, in words), and for a budgeted training its `BUDGET_METRICS`
            (columns and MLflow metrics only then).
        evaluation: Output of `evaluate_predictions`; its `metrics` (every `test_*` metric) become columns.
        run: `dataset` and `architecture` names.

    Returns:
        The table, the same table as Markdown, and the run's size, epochs and speed as MLflow
        metrics (`{name: {value, step}}`), which the leaderboard reads back from earlier runs.
    """
    row = {
        "dataset": run["dataset"],
        "architecture": run["architecture"],
        **{name: training_summary[name] for name in SIZE_METRICS},
        **{history_column(metric): (history.get(metric) or [math.nan])[-1] for metric in HISTORY_METRICS},
        **evaluation["metrics"],
        **{name: training_summary[name] for name in SPEED_METRICS},
        **{name: float(training_summary[name]) for name in BUDGET_METRICS if name in training_summary},
    }
    table = pd.DataFrame([row])
    logged = [*SUMMARY_METRICS, *(name for name in BUDGET_METRICS if name in row)]
    summary = to_mlflow_metrics({name: row[name] for name in logged})
    return table, to_markdown(table) + "\n" + loss_note(training_summary.get("objective")), summary


def loss_note(objective: str | None) -> str:
    """The line under a metrics table that says what its loss columns hold."""
    minimised = f": {objective}" if objective else ""
    return (
        "Losses: `train_loss`, `val_loss` and `test_loss` are the cross-entropy of the predictions against the "
        "labels, alike on every split (`train_loss` over the last epoch's augmented batches). "
        f"`train_objective` is what training minimised{minimised}; `l2_penalty` is the weights' L2 penalty.\n"
    )


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; floats below 1 with 4 decimals, others with 1 or none."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            if math.isnan(value):
                return "n/a"
            return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
        if isinstance(value, int | np.integer):
            return f"{value:,}"
        return str(value)

    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" if table[c].dtype == object else "---:" for c in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in record) + " |" for record in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def per_class_table(evaluation: dict[str, Any]) -> pd.DataFrame:
    """Test accuracy and support of every class."""
    confusion = np.asarray(evaluation["confusion_matrix"])
    return pd.DataFrame(
        {
            "class": evaluation["class_names"],
            "test_accuracy": list(evaluation["per_class_accuracy"].values()),
            "support": confusion.sum(axis=1),
        }
    )


def plot_learning_curves(history: dict[str, list[float]], run: dict[str, str]) -> Figure:
    """Loss (the data loss, cross-entropy against the labels) and accuracy per epoch, training vs validation."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    figure = Figure(figsize=(11, 4))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for axis, metric, title in ((loss_axis, "loss", "Loss (cross-entropy)"), (accuracy_axis, "accuracy", "Accuracy")):
        axis.plot(epochs, history[metric], marker="o", markersize=3, label="train")
        axis.plot(epochs, history[f"val_{metric}"], marker="o", markersize=3, label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{run['architecture']} on {run['dataset']}: learning curves")
    figure.tight_layout()
    return figure


def plot_confusion_matrix(evaluation: dict[str, Any], run: dict[str, str]) -> Figure:
    """Row-normalised test confusion matrix (true class down, predicted across)."""
    confusion = np.asarray(evaluation["confusion_matrix"], dtype=float)
    names = evaluation["class_names"]
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.45 * len(names) + 2)
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    if len(names) <= 30:
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        for (row, col), count in np.ndenumerate(confusion):
            if count:
                axis.text(
                    col,
                    row,
                    int(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[row, col] > 0.5 else "black",
                )
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{run['architecture']} on {run['dataset']}: test confusion matrix")
    figure.tight_layout()
    return figure


def plot_sample_predictions(
    test_images: np.ndarray,
    test_labels: np.ndarray,
    test_indices: np.ndarray,
    probabilities: np.ndarray,
    class_names: list[str],
    run: dict[str, str],
) -> Figure:
    """The first 16 test images with true and predicted class (green if right, red if wrong)."""
    count = min(SAMPLE_GRID * SAMPLE_GRID, len(test_indices))
    figure = Figure(figsize=(8, 9))
    axes = figure.subplots(SAMPLE_GRID, SAMPLE_GRID)
    for slot, axis in enumerate(axes.flat):
        axis.axis("off")
        if slot >= count:
            continue
        image = test_images[test_indices[slot]]
        true, predicted = int(test_labels[test_indices[slot]]), int(probabilities[slot].argmax())
        axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        axis.set_title(
            f"true: {class_names[true]}\npred: {class_names[predicted]} ({probabilities[slot, predicted]:.0%})",
            fontsize=8,
            color="green" if true == predicted else "red",
        )
    figure.suptitle(f"{run['architecture']} on {run['dataset']}: sample test predictions")
    figure.tight_layout()
    return figure
