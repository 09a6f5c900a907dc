"""`{dataset}_{architecture}_search`: trials of a shared Optuna study on the prepared data, then its report.

It reads the dataset's prepared arrays and writes none of them, so any number of workers (processes,
machines) run it at once against one study; prepare the data first with `{dataset}_data`.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.dataset_specs import get_dataset
from convbench.pipelines.binding import bind
from convbench.pipelines.search.nodes import report_search, run_search
from convbench.pipelines.training.pipeline import (
    CROWD_DATASET_INPUTS,
    DATASET_INPUTS,
    recipe_parameters,
    resolve_recipe_node,
)
from convbench.runner import FANS_OUT_TAG

SEARCH_OUTPUTS = (
    "search_trials",
    "search_best_recipe",
    "search_best_params",
    "search_report",
    "search_history_plot",
    "search_importance_plot",
    "search_parallel_plot",
    "search_metrics",
)


def create_pipeline(dataset: str = "cifar10", architecture: str = "resnet", **kwargs) -> Pipeline:
    """The search of `architecture`'s recipe on `dataset` over `search.spaces.<architecture>`.

    The base recipe is the training pipeline's (`resolve_recipe`: recipe < dataset overrides <
    run env and --params); every output is namespaced `<dataset>.<architecture>.search_*`.
    """
    crowd = get_dataset(dataset).crowd_labelled
    template = Pipeline(
        [
            resolve_recipe_node(crowd, architecture, outputs="search_base_recipe", name="resolve_search_recipe"),
            Node(
                bind(run_search, architecture=architecture, dataset=dataset),
                inputs=[
                    "train_images",
                    "train_targets" if crowd else "train_labels",
                    "train_indices",
                    "val_indices",
                    "class_names",
                    "normalization",
                    "search_base_recipe",
                    "params:search",
                    "search_dir",
                ],
                outputs="search_summary",
                name="run_search",
                tags=["training", FANS_OUT_TAG],  # under the DaskRunner, a search worker on every Dask worker
            ),
            Node(
                bind(report_search, architecture=architecture, dataset=dataset),
                inputs=["search_summary", "search_base_recipe", "params:search"],
                outputs=list(SEARCH_OUTPUTS),
                name="report_search",
                tags=["reporting"],
            ),
        ]
    )
    parameters = {**recipe_parameters(dataset, architecture, crowd), "params:search": "params:search"}
    inputs = [name for name in (CROWD_DATASET_INPUTS if crowd else DATASET_INPUTS) if not name.startswith("test_")]
    return Pipeline(
        template,
        namespace=f"{dataset}.{architecture}",
        inputs={name: f"{dataset}.{name}" for name in inputs},
        parameters=parameters,
        tags=["search", dataset, architecture],
    )
