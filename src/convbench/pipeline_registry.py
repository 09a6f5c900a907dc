"""Registers `{dataset}_ingestion`, `{dataset}_preprocessing` and `{dataset}_{architecture}` pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from convbench.data.cifar import FORMATS
from convbench.models.registry import ARCHITECTURES
from convbench.pipelines import ingestion, preprocessing, reporting, training

DATASETS = tuple(FORMATS)
DEFAULT_PIPELINE = "cifar10_resnet"


def experiment_pipeline(dataset: str, architecture: str) -> Pipeline:
    """Everything from the raw archive to the report of `architecture` trained on `dataset`."""
    return (
        ingestion.create_pipeline(dataset)
        + preprocessing.create_pipeline(dataset)
        + training.create_pipeline(dataset, architecture)
        + reporting.create_pipeline(dataset, architecture)
    )


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by name; `__default__` is `cifar10_resnet`."""
    pipelines: dict[str, Pipeline] = {}
    for dataset in DATASETS:
        pipelines[f"{dataset}_ingestion"] = ingestion.create_pipeline(dataset)
        pipelines[f"{dataset}_preprocessing"] = preprocessing.create_pipeline(dataset)
        for architecture in ARCHITECTURES:
            pipelines[f"{dataset}_{architecture}"] = experiment_pipeline(dataset, architecture)
    pipelines["__default__"] = pipelines[DEFAULT_PIPELINE]
    return pipelines


def dataset_of(pipeline_name: str) -> str | None:
    """The dataset a registered pipeline name belongs to (`cifar10_resnet` -> `cifar10`), if any."""
    if pipeline_name == "__default__":
        pipeline_name = DEFAULT_PIPELINE
    return next((d for d in sorted(DATASETS, key=len, reverse=True) if pipeline_name.startswith(f"{d}_")), None)
