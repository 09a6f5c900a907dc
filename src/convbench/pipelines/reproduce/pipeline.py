"""`reproduce` (every claim, then the report) and `reproduce_<claim>` (one claim, then the report)."""

from __future__ import annotations

from collections.abc import Mapping

from kedro.pipeline import Node, Pipeline

from convbench.dataset_specs import get_dataset
from convbench.hooks.preflight import PREFLIGHT_TAG
from convbench.pipelines.binding import bind
from convbench.pipelines.reproduce.nodes import (
    PARAMETERS,
    build_reproduction_report,
    check_claim_recipe,
    reproduce_claim,
)
from convbench.pipelines.training.pipeline import CROWD_DATASET_INPUTS, DATASET_INPUTS

NAMESPACE = "reproduce"
REPORT_OUTPUTS = ["reproduction", "reproduction_markdown", "reproduction_plot"]
"""`data/08_reporting/reproduction.{csv,md,png}`, logged to MLflow under `reproduce/`."""


def result_name(claim_id: str) -> str:
    """The in-memory result of claim `claim_id` in a run (`reproduce_claim`'s output)."""
    return f"claim_{claim_id}_result"


def claim_pipeline(claim_id: str, dataset: str) -> Pipeline:
    """Trains claim `claim_id` on the prepared `dataset`: writes `claim_<claim_id>_result`. Its recipe is
    checked first, before any node of the run (`check_claim_recipe`, tagged `preflight`).

    Namespaced `<dataset>.claim_<claim_id>`, beside the dataset's architectures: its checkpoints are
    `<dataset>.claim_<claim_id>.checkpoint_dir` (data/06_models/<dataset>/claim_<claim_id>/checkpoint).
    """
    data_inputs = CROWD_DATASET_INPUTS if get_dataset(dataset).crowd_labelled else DATASET_INPUTS
    parameters = [f"params:{name}" for name in PARAMETERS]
    check = Node(
        bind(check_claim_recipe, claim_id=claim_id),
        inputs=parameters,
        outputs=None,
        name="check_claim_recipe",
        tags=[PREFLIGHT_TAG],
    )
    train = Node(
        bind(reproduce_claim, claim_id=claim_id),
        inputs=[*data_inputs, "checkpoint_dir", *parameters],
        outputs="result",
        name="reproduce_claim",
        tags=["training"],
    )
    return Pipeline(
        [check, train],
        namespace=f"{dataset}.claim_{claim_id}",
        inputs={name: f"{dataset}.{name}" for name in data_inputs},
        outputs={"result": result_name(claim_id)},
        parameters={f"params:{name}": f"params:{name}" for name in PARAMETERS},
        tags=[NAMESPACE, dataset],
    )


def create_pipeline(claims: Mapping[str, str] | None = None, **kwargs) -> Pipeline:
    """Trains every claim of `claims` (id -> dataset), then reports all claims (`build_reproduction_report`):
    those of this run from their results, the others from MLflow. Without data pipelines; the
    registry adds each claim's dataset's."""
    claims = dict(claims or {})
    pipeline = Pipeline([])
    for claim_id, dataset in claims.items():
        pipeline += claim_pipeline(claim_id, dataset)
    report = Node(
        build_reproduction_report,
        inputs=[*(f"params:{name}" for name in PARAMETERS), *(result_name(claim_id) for claim_id in claims)],
        outputs=REPORT_OUTPUTS,
        name="build_reproduction_report",
        tags=["reporting", NAMESPACE],
    )
    return pipeline + Pipeline([report])
