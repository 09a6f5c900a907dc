"""`{dataset}_preprocessing`: splits, training-split statistics and the dataset card."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.dataset_specs import get_dataset
from convbench.pipelines.preprocessing.nodes import (
    build_crowd_label_card,
    build_dataset_card,
    channel_statistics,
    label_crowd_votes,
    predefined_split,
    split_dataset,
)

SPLIT_OUTPUTS = ["train_indices", "val_indices", "test_indices"]
CARD_OUTPUTS = ["dataset_card", "dataset_card_markdown"]
CARD_INPUTS = {
    name: name
    for name in (
        "train_images",
        "train_labels",
        "test_labels",
        "train_indices",
        "val_indices",
        "test_indices",
        "class_names",
    )
} | {"statistics": "normalization"}
"""`build_dataset_card`'s arguments -> the datasets they are read from."""


def create_pipeline(dataset: str = "cifar10", **kwargs) -> Pipeline:
    """Preprocessing of one dataset, namespaced by its name; parameters from `preprocessing.<dataset>`.

    Crowd-labelled datasets (FERPlus) are first labelled with `preprocessing.<dataset>.label_mode`
    and keep their predefined splits; the others have validation carved from the official training set.
    """
    crowd = get_dataset(dataset).crowd_labelled
    template = crowd_label_preprocessing() if crowd else random_split_preprocessing()
    parameters = {
        "params:split": f"params:preprocessing.{dataset}",
        "params:source": f"params:ingestion.{dataset}.source",
    }
    if crowd:
        parameters |= {
            "params:label_mode": f"params:preprocessing.{dataset}.label_mode",
            "params:fer2013_folder": f"params:ingestion.{dataset}.fer2013_folder",
        }
    return Pipeline(template, namespace=dataset, parameters=parameters, tags=["preprocessing", dataset])


def statistics_node() -> Node:
    """Per-channel mean and std over the training split (the z-score the models apply)."""
    return Node(
        channel_statistics, inputs=["train_images", "train_indices"], outputs="normalization", name="channel_statistics"
    )


def crowd_label_preprocessing() -> Pipeline:
    """Labels from crowd votes, splits by `Usage`, statistics, and a card with the drops of every label mode."""
    return Pipeline(
        [
            Node(
                label_crowd_votes,
                inputs=["train_annotations", "test_annotations", "params:label_mode"],
                outputs=["train_labels", "test_labels", "train_targets", "label_drops", "label_metrics"],
                name="label_crowd_votes",
            ),
            Node(
                predefined_split,
                inputs=["train_annotations", "train_labels", "test_labels", "params:split"],
                outputs=SPLIT_OUTPUTS,
                name="predefined_split",
            ),
            statistics_node(),
            Node(
                build_crowd_label_card,
                inputs={
                    "fer2013_folder": "params:fer2013_folder",
                    "source": "params:source",
                    "label_drops": "label_drops",
                    "label_mode": "params:label_mode",
                    **CARD_INPUTS,
                },
                outputs=CARD_OUTPUTS,
                name="build_dataset_card",
            ),
        ]
    )


def random_split_preprocessing() -> Pipeline:
    """A seeded stratified validation split of the official training set, statistics and the card."""
    return Pipeline(
        [
            Node(
                split_dataset,
                inputs=["train_labels", "test_labels", "params:split"],
                outputs=SPLIT_OUTPUTS,
                name="split_dataset",
            ),
            statistics_node(),
            Node(
                build_dataset_card,
                inputs={"source": "params:source", **CARD_INPUTS},
                outputs=CARD_OUTPUTS,
                name="build_dataset_card",
            ),
        ]
    )
