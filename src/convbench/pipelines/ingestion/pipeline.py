"""`{dataset}_ingestion`: download the official files, parse them, store arrays in 02_intermediate.

One template per raw format (CIFAR binary archive, MNIST idx files, Tiny ImageNet zip, FER2013 +
FERPlus CSV files, a folder of images with one subfolder per class); each dataset's spec (`convbench.dataset_specs`) names its format.
"""

from __future__ import annotations

from collections.abc import Callable

from kedro.pipeline import Node, Pipeline

from convbench.dataset_specs import IMAGE_FOLDER, DatasetSpec, SourceFormat, get_dataset
from convbench.hooks.preflight import PREFLIGHT_TAG
from convbench.pipelines.binding import bind
from convbench.pipelines.ingestion.nodes import (
    PARSED_ARRAYS,
    download_archive,
    download_files,
    download_source,
    locate_fer2013_file,
    parse_cifar_archive,
    parse_ferplus_files,
    parse_image_folder,
    parse_mnist_files,
    parse_tiny_imagenet_archive,
    parse_with,
)

CORE_OUTPUTS = PARSED_ARRAYS
COARSE_OUTPUTS = ("train_coarse_labels", "test_coarse_labels", "coarse_class_names")


CROWD_OUTPUTS = ("train_images", "test_images", "train_annotations", "test_annotations", "class_names")

IMAGE_FOLDER_OUTPUTS = ("image_folder_manifest",)
"""Besides the arrays, an image folder's ingestion writes the manifest of every file it found."""

IMAGE_FOLDER_PARAMETERS = ("path", "image_size", "channels", "test_size", "seed", "max_corrupt")
"""`ingestion.<name>.<parameter>` of an image folder, in `parse_image_folder`'s order."""


def parsed_outputs(spec: DatasetSpec) -> tuple[str, ...]:
    """Names of the datasets the ingestion of `spec` writes (without the namespace)."""
    if spec.crowd_labelled:
        return CROWD_OUTPUTS
    if spec.source_format == IMAGE_FOLDER:
        return CORE_OUTPUTS + IMAGE_FOLDER_OUTPUTS
    return CORE_OUTPUTS + (COARSE_OUTPUTS if spec.coarse_labels else ())


def _outputs(spec: DatasetSpec) -> dict[str, str]:
    return {name: name for name in parsed_outputs(spec)}


def _download_then_parse(
    spec: DatasetSpec, download: Callable, downloaded: str, parse: Callable, options: str, names: tuple[str, str]
) -> Pipeline:
    """Two nodes, named `names`: `download` of `params:source` to `downloaded`, then `parse` of that
    with `params:<options>` into the arrays of `spec`."""
    download_name, parse_name = names
    return Pipeline(
        [
            Node(download, inputs="params:source", outputs=downloaded, name=download_name),
            Node(parse, inputs=[downloaded, f"params:{options}"], outputs=_outputs(spec), name=parse_name),
        ]
    )


def cifar_ingestion(spec: DatasetSpec) -> Pipeline:
    """One CIFAR binary archive: download, then parse straight from the tar."""
    parse = bind(parse_cifar_archive, archive_format=spec.name)
    return _download_then_parse(
        spec, download_archive, "archive_path", parse, "expected_counts", ("download_archive", "parse_archive")
    )


def mnist_ingestion(spec: DatasetSpec) -> Pipeline:
    """The four MNIST idx files: download each, then parse."""
    return _download_then_parse(
        spec, download_files, "raw_paths", parse_mnist_files, "expected_counts", ("download_files", "parse_files")
    )


def tiny_imagenet_ingestion(spec: DatasetSpec) -> Pipeline:
    """Tiny ImageNet-200's zip: download, then decode and downscale its JPEGs straight from the zip."""
    return _download_then_parse(
        spec,
        download_archive,
        "archive_path",
        parse_tiny_imagenet_archive,
        "options",
        ("download_archive", "parse_archive"),
    )


def ferplus_ingestion(spec: DatasetSpec) -> Pipeline:
    """FER2013's pixels (placed by the user) and FERPlus' crowd votes (downloaded), joined row by row.

    `locate_fer2013` is tagged `preflight`: it runs before anything else, so a missing file
    stops the run at once (see `convbench.hooks.preflight.PreflightHook`).
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
                outputs=_outputs(spec),
                name="parse_files",
            ),
        ]
    )


def parser_ingestion(spec: DatasetSpec) -> Pipeline:
    """Any raw format: download `source` (one file or several by name), then call the spec's own parser."""
    parse = bind(parse_with, parser=spec.parser)
    return _download_then_parse(
        spec, download_source, "raw_files", parse, "options", ("download_source", "parse_files")
    )


def image_folder_ingestion(spec: DatasetSpec) -> Pipeline:
    """A folder of the user's images, one subfolder per class: decode, resize, carve a test split if needed."""
    return Pipeline(
        [
            Node(
                parse_image_folder,
                inputs=[f"params:{name}" for name in IMAGE_FOLDER_PARAMETERS],
                outputs=_outputs(spec),
                name="read_image_folder",
            )
        ]
    )


TEMPLATES: dict[SourceFormat, Callable[[DatasetSpec], Pipeline]] = {
    "cifar_binary": cifar_ingestion,
    "mnist_idx": mnist_ingestion,
    "tiny_imagenet_zip": tiny_imagenet_ingestion,
    "fer2013_ferplus_csv": ferplus_ingestion,
    IMAGE_FOLDER: image_folder_ingestion,
    "parser": parser_ingestion,
}
"""The ingestion template of every raw format a `DatasetSpec` may name."""


def create_pipeline(dataset: str = "cifar10", **kwargs) -> Pipeline:
    """Ingestion of `dataset`, namespaced by its name (`cifar10.train_images`, ...).

    Parameters come from `ingestion.<dataset>` in parameters_ingestion.yml.
    """
    spec = get_dataset(dataset)
    template = TEMPLATES[spec.source_format](spec)
    parameters = {
        name: f"params:ingestion.{dataset}.{name.removeprefix('params:')}"
        for name in template.inputs()
        if name.startswith("params:")
    }
    return Pipeline(template, namespace=dataset, parameters=parameters, tags=["ingestion", dataset])
