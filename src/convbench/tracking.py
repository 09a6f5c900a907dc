"""MLflow look-ups shared by the hooks, the leaderboard and `predict`: the tracking URI of this machine, the
Kedro env of a run, finished runs, and the owner process of a run (to end killed runs as KILLED)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

TRACKING_URI_RESOLVER = "convbench.tracking_uri"
"""`${convbench.tracking_uri:<default>}` in `mlflow.yml`: `MLFLOW_TRACKING_URI` where set, else `<default>`."""

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri(default: str) -> str:
    """The MLflow tracking URI of this machine: `MLFLOW_TRACKING_URI` if set and not empty (as MLflow reads
    it), else `default`. Not `oc.env`, which Kedro keeps to credentials and which would return an empty value."""
    return os.environ.get(TRACKING_URI_ENV) or default


ENV_TAG = "convbench.env"
"""The Kedro env of a run, as `MlflowNodeTrackingHook` tags it (smoke runs never mix with real ones)."""


BACKEND_TAG = "convbench.keras_backend"
"""The Keras backend a run trained under (`KERAS_BACKEND`: tensorflow, jax or torch), as `MlflowNodeTrackingHook`
tags it; a run without the tag is from before convbench ran under other backends, so TensorFlow."""

DEFAULT_BACKEND = "tensorflow"


def current_backend() -> str:
    """The Keras backend of this process."""
    import keras  # here, not above: `kedro --help`, the settings and the figure modules must not load TensorFlow

    return keras.backend.backend()


def run_backend(run: Run) -> str:
    """The Keras backend `run` trained under (`BACKEND_TAG`)."""
    return run.data.tags.get(BACKEND_TAG, DEFAULT_BACKEND)


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


PROCESS_TAG = "convbench.process"
"""`<host>:<pid>:<start>` of the `kedro run` that owns a run, so a later run can tell a live run from a killed one."""

KILLED_TAG = "convbench.killed"
"""Why a run ended as KILLED: the signal it stopped on, or that its process was found gone."""


def _start_ticks(pid: int) -> str | None:
    """The start time of process `pid` since boot (Linux `/proc`), or None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name (field 2) may hold spaces


def this_process() -> str:
    """This process's `PROCESS_TAG` value."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or 0}"


def process_is_gone(identity: str) -> bool:
    """True only when `identity` (a `PROCESS_TAG`) names a process of this host that no longer runs.

    A pid reused by another process counts as gone (its start time differs); a process of another
    host is never judged from here.
    """
    host, _, rest = identity.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if Path("/proc/self/stat").exists():
        return _start_ticks(int(pid)) != started
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def mark_orphaned_runs_killed(client: MlflowClient | None = None) -> list[str]:
    """Ends as KILLED every RUNNING run whose `kedro run` process is gone (kill -9, power loss); their ids.

    Runs without `PROCESS_TAG` (not started by convbench) and runs of other hosts are left alone.
    """
    client = client or MlflowClient()
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    if not experiment_ids:
        return []
    killed = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000):
        identity = run.data.tags.get(PROCESS_TAG)
        if identity and process_is_gone(identity):
            client.set_tag(
                run.info.run_id, KILLED_TAG, f"its process ({identity}) was gone when a later kedro run started"
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            killed.append(run.info.run_id)
    return killed
