"""MLflow look-ups shared by the hooks, the leaderboard and `predict`: the Kedro env of a run, finished runs."""

from __future__ import annotations

import mlflow
from mlflow.entities import Run

ENV_TAG = "convbench.env"
"""The Kedro env of a run, as `MlflowNodeTrackingHook` tags it (smoke runs never mix with real ones)."""


def active_run_env() -> str | None:
    """The Kedro env the active MLflow run was tagged with, if there is an active run."""
    active = mlflow.active_run()
    return mlflow.get_run(active.info.run_id).data.tags.get(ENV_TAG) if active else None


def finished_runs(experiment_id: str, env: str | None = None) -> list[Run]:
    """The experiment's finished runs, latest first; with `env`, only the runs of that Kedro env."""
    conditions = ["attributes.status = 'FINISHED'"] + ([f"tags.`{ENV_TAG}` = '{env}'"] if env else [])
    return mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=" and ".join(conditions),
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
