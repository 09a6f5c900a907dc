"""Registers the pipelines of every dataset: `{dataset}_ingestion`, `{dataset}_preprocessing`,
`{dataset}_{architecture}` for every architecture, `{dataset}` (all of them, then the
leaderboard) and `{dataset}_leaderboard` (the leaderboard from earlier MLflow runs alone), and
`predict` (a folder of image files classified by a logged model)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Pipeline

from convbench.models.registry import ARCHITECTURES
from convbench.pipelines import ingestion, leaderboard, predict, preprocessing, reporting, training
from convbench.pipelines.ingestion.pipeline import DATASETS

DEFAULT_PIPELINE = "cifar10_resnet"


def experiment_pipeline(dataset: str, architectures: Iterable[str]) -> Pipeline:
    """Everything from the raw archive to the reports of `architectures` trained on `dataset`."""
    pipeline = ingestion.create_pipeline(dataset) + preprocessing.create_pipeline(dataset)
    for architecture in architectures:
        pipeline += training.create_pipeline(dataset, architecture) + reporting.create_pipeline(dataset, architecture)
    return pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by name; `__default__` is `cifar10_resnet`."""
    pipelines: dict[str, Pipeline] = {}
    for dataset in DATASETS:
        pipelines[f"{dataset}_ingestion"] = ingestion.create_pipeline(dataset)
        pipelines[f"{dataset}_preprocessing"] = preprocessing.create_pipeline(dataset)
        for architecture in ARCHITECTURES:
            pipelines[f"{dataset}_{architecture}"] = experiment_pipeline(dataset, [architecture])
        pipelines[dataset] = experiment_pipeline(dataset, ARCHITECTURES) + leaderboard.create_pipeline(
            dataset, ARCHITECTURES
        )
        pipelines[f"{dataset}_leaderboard"] = leaderboard.create_pipeline(dataset)
    pipelines["predict"] = predict.create_pipeline()
    pipelines["__default__"] = pipelines[DEFAULT_PIPELINE]
    return pipelines


def dataset_of(pipeline_name: str) -> str | None:
    """The dataset a registered pipeline name belongs to (`cifar10_resnet` and `cifar10` -> `cifar10`), if any."""
    if pipeline_name == "__default__":
        pipeline_name = DEFAULT_PIPELINE
    for dataset in sorted(DATASETS, key=len, reverse=True):
        if pipeline_name == dataset or pipeline_name.startswith(f"{dataset}_"):
            return dataset
    return None
