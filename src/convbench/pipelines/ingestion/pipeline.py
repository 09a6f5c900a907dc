"""`{dataset}_ingestion`: download the official archive, parse it, store arrays in 02_intermediate."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from convbench.data.cifar import FORMATS
from convbench.pipelines.ingestion.nodes import download_archive, parse_cifar_archive

CORE_OUTPUTS = ("train_images", "train_labels", "test_images", "test_labels", "class_names")
COARSE_OUTPUTS = ("train_coarse_labels", "test_coarse_labels", "coarse_class_names")


def parsed_outputs(dataset: str) -> tuple[str, ...]:
    """Names of the datasets the ingestion of `dataset` writes (without the namespace)."""
    has_coarse_labels = len(FORMATS[dataset].label_fields) > 1
    return CORE_OUTPUTS + (COARSE_OUTPUTS if has_coarse_labels else ())


def create_pipeline(dataset: str = "cifar10", **kwargs) -> Pipeline:
    """Ingestion of one CIFAR dataset, namespaced by its name (`cifar10.train_images`, ...).

    Parameters come from `ingestion.<dataset>` in parameters_ingestion.yml.
    """
    template = Pipeline(
        [
            Node(download_archive, inputs="params:source", outputs="archive_path", name="download_archive"),
            Node(
                parse_cifar_archive,
                inputs=["archive_path", "params:format", "params:expected_counts"],
                outputs={name: name for name in parsed_outputs(dataset)},
                name="parse_archive",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=dataset,
        parameters={
            f"params:{name}": f"params:ingestion.{dataset}.{name}" for name in ("source", "format", "expected_counts")
        },
        tags=["ingestion", dataset],
    )
