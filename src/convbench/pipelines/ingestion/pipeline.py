"""`{dataset}_ingestion`: download the official files, parse them, store arrays in 02_intermediate.

One template per source format (CIFAR binary archive, MNIST idx files, Tiny ImageNet zip,
FER2013 + FERPlus CSV files); `DATASETS` maps every dataset to its template, and is the one list of datasets.
"""

from __future__ import annotations

from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from convbench.data.cifar import FORMATS
from convbench.pipelines.ingestion.nodes import (
    download_archive,
    download_files,
    locate_fer2013_file,
    parse_cifar_archive,
    parse_ferplus_files,
    parse_mnist_files,
    parse_tiny_imagenet_archive,
)

PREFLIGHT_TAG = "preflight"
"""Tag of cheap nodes that check what the user must provide; `PreflightHook` runs them first."""

CORE_OUTPUTS = ("train_images", "train_labels", "test_images", "test_labels", "class_names")
COARSE_OUTPUTS = ("train_coarse_labels", "test_coarse_labels", "coarse_class_names")


CROWD_OUTPUTS = ("train_images", "test_images", "train_annotations", "test_annotations", "class_names")


def parsed_outputs(dataset: str) -> tuple[str, ...]:
    """Names of the datasets the ingestion of `dataset` writes (without the namespace)."""
    if crowd_labelled(dataset):
        return CROWD_OUTPUTS
    has_coarse_labels = dataset in FORMATS and len(FORMATS[dataset].label_fields) > 1
    return CORE_OUTPUTS + (COARSE_OUTPUTS if has_coarse_labels else ())


def _outputs(dataset: str) -> dict[str, str]:
    return {name: name for name in parsed_outputs(dataset)}


def cifar_ingestion(dataset: str) -> Pipeline:
    """One CIFAR binary archive: download, then parse straight from the tar."""
    return Pipeline(
        [
            Node(download_archive, inputs="params:source", outputs="archive_path", name="download_archive"),
            Node(
                parse_cifar_archive,
                inputs=["archive_path", "params:format", "params:expected_counts"],
                outputs=_outputs(dataset),
                name="parse_archive",
            ),
        ]
    )


def mnist_ingestion(dataset: str) -> Pipeline:
    """The four MNIST idx files: download each, then parse."""
    return Pipeline(
        [
            Node(download_files, inputs="params:sources", outputs="raw_paths", name="download_files"),
            Node(
                parse_mnist_files,
                inputs=["raw_paths", "params:expected_counts"],
                outputs=_outputs(dataset),
                name="parse_files",
            ),
        ]
    )


def tiny_imagenet_ingestion(dataset: str) -> Pipeline:
    """Tiny ImageNet-200's zip: download, then decode and downscale its JPEGs straight from the zip."""
    return Pipeline(
        [
            Node(download_archive, inputs="params:source", outputs="archive_path", name="download_archive"),
            Node(
                parse_tiny_imagenet_archive,
                inputs=["archive_path", "params:options"],
                outputs=_outputs(dataset),
                name="parse_archive",
            ),
        ]
    )


def ferplus_ingestion(dataset: str) -> Pipeline:
    """FER2013's pixels (placed by the user) and FERPlus' crowd votes (downloaded), joined row by row.

    `locate_fer2013` is tagged `preflight`: it runs before anything else, so a missing file
    stops the run at once (see `convbench.hooks.PreflightHook`).
    """
    return Pipeline(
        [
            Node(
                locate_fer2013_file,
                inputs="params:fer2013_folder",
                outputs="fer2013_path",
                name="locate_fer2013",
                tags=[PREFLIGHT_TAG],
            ),
            Node(download_archive, inputs="params:source", outputs="ferplus_path", name="download_ferplus_votes"),
            Node(
                parse_ferplus_files,
                inputs=["fer2013_path", "ferplus_path", "params:expected_counts", "params:options"],
                outputs=_outputs(dataset),
                name="parse_files",
            ),
        ]
    )


DATASETS: dict[str, Callable[[str], Pipeline]] = {
    "cifar10": cifar_ingestion,
    "cifar100": cifar_ingestion,
    "mnist": mnist_ingestion,
    "tinyimagenet": tiny_imagenet_ingestion,
    "ferplus": ferplus_ingestion,
}
"""Every dataset and the ingestion template of its source format."""


def crowd_labelled(dataset: str) -> bool:
    """Whether `dataset` keeps crowd votes, labelled by the scheme `training.label_mode` names (FERPlus)."""
    return DATASETS[dataset] is ferplus_ingestion


def source_parameter(dataset: str) -> str:
    """The ingestion parameter describing `dataset`'s raw file(s): `source` (one file) or `sources` (several)."""
    return "sources" if "params:sources" in DATASETS[dataset](dataset).inputs() else "source"


def create_pipeline(dataset: str = "cifar10", **kwargs) -> Pipeline:
    """Ingestion of `dataset`, namespaced by its name (`cifar10.train_images`, ...).

    Parameters come from `ingestion.<dataset>` in parameters_ingestion.yml.
    """
    template = DATASETS[dataset](dataset)
    parameters = {
        name.removeprefix("params:"): f"params:ingestion.{dataset}.{name.removeprefix('params:')}"
        for name in template.inputs()
        if name.startswith("params:")
    }
    return Pipeline(
        template,
        namespace=dataset,
        parameters={f"params:{name}": target for name, target in parameters.items()},
        tags=["ingestion", dataset],
    )
