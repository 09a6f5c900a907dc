"""`{dataset}_{architecture}` training: build, train, export and evaluate, namespaced `dataset.architecture`."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.config import RUN_RECIPE_SETTINGS
from convbench.dataset_specs import get_dataset
from convbench.hooks.preflight import PREFLIGHT_TAG
from convbench.models.registry import needs_files
from convbench.pipelines.binding import bind
from convbench.pipelines.training.nodes import (
    build_classifier,
    build_model,
    check_model_files,
    evaluate_predictions,
    predict_test_set,
    resolve_recipe,
    train_model,
)

DATASET_INPUTS = (
    "train_images",
    "train_labels",
    "test_images",
    "test_labels",
    "class_names",
    "train_indices",
    "val_indices",
    "test_indices",
    "normalization",
)
CROWD_DATASET_INPUTS = tuple(name if name != "train_labels" else "train_targets" for name in DATASET_INPUTS)
"""Crowd-labelled datasets train on target distributions instead of class labels."""


def create_pipeline(dataset: str = "cifar10", architecture: str = "resnet", **kwargs) -> Pipeline:
    """Training of `architecture` on `dataset` with the recipe `training.<architecture>`.

    The recipe is first merged with `recipe_overrides.<dataset>` (e.g. no flips for digits), under
    what the run env and --params set, and saved as `<dataset>.<architecture>.recipe`, the exact
    recipe the model was trained with. Crowd-labelled datasets (FERPlus) train on `train_targets`
    under `preprocessing.<dataset>.label_mode`.

    Dataset-level inputs (`cifar10.train_images`, ...) are shared; everything it writes is
    namespaced `<dataset>.<architecture>.*`.
    """
    crowd = get_dataset(dataset).crowd_labelled
    template = Pipeline(
        [
            resolve_recipe_node(crowd, architecture, outputs="recipe", name="resolve_recipe"),
            Node(
                bind(build_model, architecture=architecture, dataset=dataset),
                inputs=["train_images", "train_indices", "class_names", "normalization", "recipe"],
                outputs="untrained_model",
                name="build_model",
            ),
            Node(
                bind(train_model, architecture=architecture),
                inputs=[
                    "untrained_model",
                    "train_images",
                    "train_targets" if crowd else "train_labels",
                    "train_indices",
                    "val_indices",
                    "class_names",
                    "recipe",
                    "checkpoint_dir",
                ],
                outputs=["model", "history", "training_summary"],
                name="train_model",
                tags=["training"],
            ),
            Node(
                build_classifier,
                inputs=["model", "class_names"],
                outputs="classifier",
                name="build_classifier",
                tags=["serving"],
            ),
            Node(
                predict_test_set,
                inputs=["model", "test_images", "test_indices", "recipe"],
                outputs=["test_probabilities", "test_tta_probabilities"],
                name="predict_test_set",
                tags=["inference"],
            ),
            Node(
                evaluate_predictions,
                inputs=["test_probabilities", "test_tta_probabilities", "test_labels", "test_indices", "class_names"],
                outputs=["test_metrics", "evaluation"],
                name="evaluate_predictions",
            ),
        ]
    )
    parameters = recipe_parameters(dataset, architecture, crowd)
    if needs_files(architecture):
        template += Pipeline(
            [
                Node(
                    bind(check_model_files, architecture=architecture),
                    inputs="params:recipe",
                    outputs=None,
                    name="check_model_files",
                    tags=[PREFLIGHT_TAG],
                )
            ]
        )
    return Pipeline(
        template,
        namespace=f"{dataset}.{architecture}",
        inputs={name: f"{dataset}.{name}" for name in (CROWD_DATASET_INPUTS if crowd else DATASET_INPUTS)},
        parameters=parameters,
        tags=["training", dataset, architecture],
    )


def resolve_recipe_node(crowd: bool, architecture: str, outputs: str, name: str) -> Node:
    """The node merging `training.<architecture>` with the dataset's overrides and the run's settings and
    checking the result (`resolve_recipe`); with `recipe_parameters` mapping its inputs in a namespaced pipeline.

    Tagged `preflight`: it reads parameters only, so a recipe mistake stops a run before its first node
    (download, parsing) instead of after it."""
    return Node(
        bind(resolve_recipe, architecture=architecture),
        inputs=[
            "params:recipe",
            "params:dataset_overrides",
            "params:run_settings",
            *(["params:label_mode"] if crowd else []),
        ],
        outputs=outputs,
        name=name,
        tags=[PREFLIGHT_TAG],
    )


def recipe_parameters(dataset: str, architecture: str, crowd: bool) -> dict[str, str]:
    """The parameters `resolve_recipe_node` reads, mapped to this dataset's and architecture's."""
    parameters = {
        "params:recipe": f"params:training.{architecture}",
        "params:dataset_overrides": f"params:recipe_overrides.{dataset}",
        "params:run_settings": f"params:{RUN_RECIPE_SETTINGS}.{architecture}",
    }
    if crowd:
        parameters["params:label_mode"] = f"params:preprocessing.{dataset}.label_mode"
    return parameters
