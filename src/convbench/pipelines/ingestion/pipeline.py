"""`{dataset}_ingestion`: download the official files, parse them, store arrays in 02_intermediate.

One template per source format (CIFAR binary archive, MNIST idx files, Tiny ImageNet zip);
`DATASETS` maps every dataset to its template, and is the one list of datasets.
"""

from __future__ import annotations

from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from convbench.data.cifar import FORMATS
from convbench.pipelines.ingestion.nodes import (
    download_archive,
    download_files,
    parse_cifar_archive,
    parse_mnist_files,
    parse_tiny_imagenet_archive,
)

CORE_OUTPUTS = ("train_images", "train_labels", "test_images", "test_labels", "class_names")
COARSE_OUTPUTS = ("train_coarse_labels", "test_coarse_labels", "coarse_class_names")


def parsed_outputs(dataset: str) -> tuple[str, ...]:
    """Names of the datasets the ingestion of `dataset` writes (without the namespace)."""
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


DATASETS: dict[str, Callable[[str], Pipeline]] = {
    "cifar10": cifar_ingestion,
    "cifar100": cifar_ingestion,
    "mnist": mnist_ingestion,
    "tinyimagenet": tiny_imagenet_ingestion,
}
"""Every dataset and the ingestion template of its source format."""


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
