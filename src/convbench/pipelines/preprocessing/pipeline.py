"""`{dataset}_preprocessing`: splits, training-split statistics and the dataset card."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.pipelines.ingestion.pipeline import source_parameter
from convbench.pipelines.preprocessing.nodes import build_dataset_card, channel_statistics, split_dataset


def create_pipeline(dataset: str = "cifar10", **kwargs) -> Pipeline:
    """Preprocessing of one dataset, namespaced by its name; parameters from `preprocessing.<dataset>`."""
    template = Pipeline(
        [
            Node(
                split_dataset,
                inputs=["train_labels", "test_labels", "params:split"],
                outputs=["train_indices", "val_indices", "test_indices"],
                name="split_dataset",
            ),
            Node(
                channel_statistics,
                inputs=["train_images", "train_indices"],
                outputs="normalization",
                name="channel_statistics",
            ),
            Node(
                build_dataset_card,
                inputs=[
                    "params:source",
                    "train_images",
                    "train_labels",
                    "test_labels",
                    "train_indices",
                    "val_indices",
                    "test_indices",
                    "class_names",
                    "normalization",
                ],
                outputs=["dataset_card", "dataset_card_markdown"],
                name="build_dataset_card",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=dataset,
        parameters={
            "params:split": f"params:preprocessing.{dataset}",
            "params:source": f"params:ingestion.{dataset}.{source_parameter(dataset)}",
        },
        tags=["preprocessing", dataset],
    )
