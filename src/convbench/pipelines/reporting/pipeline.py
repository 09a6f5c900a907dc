"""Reporting of one `{dataset}_{architecture}` run: tables and PNG figures, namespaced like training."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.metrics import METRICS_TABLE
from convbench.pipelines.binding import bind
from convbench.pipelines.reporting.nodes import (
    metrics_table,
    per_class_table,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_sample_predictions,
)


def create_pipeline(dataset: str = "cifar10", architecture: str = "resnet", **kwargs) -> Pipeline:
    """Metrics table (CSV + Markdown), per-class accuracy, learning curves, confusion matrix, samples."""
    run = {"dataset": dataset, "architecture": architecture}
    template = Pipeline(
        [
            Node(
                bind(metrics_table, run=run),
                inputs=["history", "training_summary", "evaluation"],
                outputs=[METRICS_TABLE, f"{METRICS_TABLE}_markdown", "summary_metrics"],
                name=METRICS_TABLE,
            ),
            Node(per_class_table, inputs="evaluation", outputs="per_class_accuracy", name="per_class_table"),
            Node(
                bind(plot_learning_curves, run=run),
                inputs="history",
                outputs="learning_curves_plot",
                name="plot_learning_curves",
            ),
            Node(
                bind(plot_confusion_matrix, run=run),
                inputs="evaluation",
                outputs="confusion_matrix_plot",
                name="plot_confusion_matrix",
            ),
            Node(
                bind(plot_sample_predictions, run=run),
                inputs=["test_images", "test_labels", "test_indices", "test_probabilities", "class_names"],
                outputs="sample_predictions_plot",
                name="plot_sample_predictions",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=f"{dataset}.{architecture}",
        inputs={name: f"{dataset}.{name}" for name in ("test_images", "test_labels", "test_indices", "class_names")},
        tags=["reporting", dataset, architecture],
    )
