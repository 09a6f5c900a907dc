"""Registers the pipelines of every dataset: `{dataset}_ingestion`, `{dataset}_preprocessing`,
`{dataset}_data` (both), `{dataset}_{architecture}` for every architecture, `{dataset}_{architecture}_search`
(an Optuna search of its recipe on the prepared data), `{dataset}` (every architecture, then the
leaderboard) and `{dataset}_leaderboard` (the leaderboard from earlier MLflow runs alone), and
`predict` (a folder of image files classified by a logged model). A folder of the user's own images
declared in conf/ (`ingestion.<name>: {format: image_folder, ...}`) gets the same pipelines.

Pipelines are built when first asked for (`LazyPipelines`): a `kedro run` builds what it runs, not
the several hundred pipelines of every dataset and architecture."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
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


def zoo_pipeline(dataset: str) -> Pipeline:
    """Every architecture on one copy of `dataset`'s data, then the leaderboard of them all."""
    return experiment_pipeline(dataset, ARCHITECTURES) + leaderboard.create_pipeline(dataset, ARCHITECTURES)


def reproduce_pipeline(claims: dict[str, str]) -> Pipeline:
    """The claims of `claims` (id -> dataset), with the data each needs."""
    return data_pipelines(claims.values()) + reproduce.create_pipeline(claims)


class LazyPipelines(Mapping[str, Pipeline]):
    """Pipelines by name, each built by its factory the first time it is asked for, then kept.

    Kedro reads the registry as a mapping: `kedro run --pipelines=a,b` asks for `a` and `b` alone,
    while `kedro viz` and `kedro registry list` go through every name.
    """

    def __init__(self, factories: dict[str, Callable[[], Pipeline]]):
        self._factories = factories
        self._built: dict[str, Pipeline] = {}

    def __getitem__(self, name: str) -> Pipeline:
        if name not in self._built:
            self._built[name] = self._factories[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def register_pipelines() -> LazyPipelines:
    """Every pipeline by name, for the built-in datasets and the image folders `conf/` declares;
    `__default__` is `cifar10_resnet`."""
    project = find_kedro_project(Path.cwd())
    claims: dict[str, str] = {}
    if project is not None:
        declared_image_folders(project / settings.CONF_SOURCE)
        claims = declared_claims(project / settings.CONF_SOURCE)
    factories: dict[str, Callable[[], Pipeline]] = {}
    for dataset in DATASETS:
        factories[f"{dataset}_ingestion"] = partial(ingestion.create_pipeline, dataset)
        factories[f"{dataset}_preprocessing"] = partial(preprocessing.create_pipeline, dataset)
        factories[f"{dataset}_data"] = partial(data_pipelines, [dataset])
        for architecture in ARCHITECTURES:
            factories[f"{dataset}_{architecture}"] = partial(experiment_pipeline, dataset, [architecture])
            factories[f"{dataset}_{architecture}_search"] = partial(search.create_pipeline, dataset, architecture)
        factories[dataset] = partial(zoo_pipeline, dataset)
        factories[f"{dataset}_leaderboard"] = partial(leaderboard.create_pipeline, dataset)
    factories["predict"] = predict.create_pipeline
    factories["reproduce"] = partial(reproduce_pipeline, claims)
    for claim_id, dataset in claims.items():
        factories[f"reproduce_{claim_id}"] = partial(reproduce_pipeline, {claim_id: dataset})
    pipelines = LazyPipelines(factories)
    factories["__default__"] = partial(pipelines.__getitem__, DEFAULT_PIPELINE)
    return pipelines
