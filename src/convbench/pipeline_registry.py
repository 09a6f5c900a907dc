"""Registers the pipelines of every dataset: `{dataset}_ingestion`, `{dataset}_preprocessing`,
`{dataset}_data` (both), `{dataset}_{architecture}` for every architecture, `{dataset}_{architecture}_search`
(an Optuna search of its recipe on the prepared data), `{dataset}` (every architecture, then the
leaderboard) and `{dataset}_leaderboard` (the leaderboard from earlier MLflow runs alone), and
`predict` (a folder of image files classified by a logged model). A folder of the user's own images
declared in conf/ (`ingestion.<name>: {format: image_folder, ...}`) gets the same pipelines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kedro.framework.project import settings
from kedro.pipeline import Pipeline
from kedro.utils import find_kedro_project

from convbench.claims import declared_claims
from convbench.config import declared_image_folders
from convbench.dataset_specs import DATASETS, DEFAULT_PIPELINE
from convbench.models.registry import ARCHITECTURES
from convbench.pipelines import (
    ingestion,
    leaderboard,
    predict,
    preprocessing,
    reporting,
    reproduce,
    search,
    training,
)


def experiment_pipeline(dataset: str, architectures: Iterable[str]) -> Pipeline:
    """Everything from the raw archive to the reports of `architectures` trained on `dataset`."""
    pipeline = ingestion.create_pipeline(dataset) + preprocessing.create_pipeline(dataset)
    for architecture in architectures:
        pipeline += training.create_pipeline(dataset, architecture) + reporting.create_pipeline(dataset, architecture)
    return pipeline


def data_pipelines(datasets: Iterable[str]) -> Pipeline:
    """Ingestion and preprocessing of each of `datasets`."""
    pipeline = Pipeline([])
    for dataset in dict.fromkeys(datasets):
        pipeline += ingestion.create_pipeline(dataset) + preprocessing.create_pipeline(dataset)
    return pipeline


def reproduce_pipelines(claims: dict[str, str]) -> dict[str, Pipeline]:
    """`reproduce` (every claim of `claims`, id -> dataset) and `reproduce_<claim>`, each with its data."""
    pipelines = {"reproduce": data_pipelines(claims.values()) + reproduce.create_pipeline(claims)}
    for claim_id, dataset in claims.items():
        pipelines[f"reproduce_{claim_id}"] = data_pipelines([dataset]) + reproduce.create_pipeline({claim_id: dataset})
    return pipelines


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by name, for the built-in datasets and the image folders `conf/` declares;
    `__default__` is `cifar10_resnet`."""
    project = find_kedro_project(Path.cwd())
    claims: dict[str, str] = {}
    if project is not None:
        declared_image_folders(project / settings.CONF_SOURCE)
        claims = declared_claims(project / settings.CONF_SOURCE)
    pipelines: dict[str, Pipeline] = {}
    for dataset in DATASETS:
        pipelines[f"{dataset}_ingestion"] = ingestion.create_pipeline(dataset)
        pipelines[f"{dataset}_preprocessing"] = preprocessing.create_pipeline(dataset)
        pipelines[f"{dataset}_data"] = pipelines[f"{dataset}_ingestion"] + pipelines[f"{dataset}_preprocessing"]
        for architecture in ARCHITECTURES:
            pipelines[f"{dataset}_{architecture}"] = experiment_pipeline(dataset, [architecture])
            pipelines[f"{dataset}_{architecture}_search"] = search.create_pipeline(dataset, architecture)
        pipelines[dataset] = experiment_pipeline(dataset, ARCHITECTURES) + leaderboard.create_pipeline(
            dataset, ARCHITECTURES
        )
        pipelines[f"{dataset}_leaderboard"] = leaderboard.create_pipeline(dataset)
    pipelines["predict"] = predict.create_pipeline()
    pipelines.update(reproduce_pipelines(claims))
    pipelines["__default__"] = pipelines[DEFAULT_PIPELINE]
    return pipelines
