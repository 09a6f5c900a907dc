"""MLflow look-ups shared by the hooks, the leaderboard and `predict`: the tracking URI of this machine, the
Kedro env of a run, finished runs, and the owner process of a run (to end killed runs as KILLED)."""

from __future__ import annotations

import contextvars
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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


Result = TypeVar("Result")


@dataclass(frozen=True)
class RunLink:
    """Where another process logs into a run: the tracking URI and the run's id."""

    tracking_uri: str
    run_id: str


def active_run_link() -> RunLink | None:
    """This process's active run, for another process to log into (`in_run`); None without one."""
    active = mlflow.active_run()
    return RunLink(mlflow.get_tracking_uri(), active.info.run_id) if active else None


def start_nested_run(run_name: str, tags: dict[str, str]) -> mlflow.ActiveRun:
    """A run nested under the active run, in the active run's experiment (MLflow would put it in the process's
    active experiment, which a Dask worker has none of: the Default one)."""
    parent = mlflow.active_run()
    experiment_id = parent.info.experiment_id if parent else None
    return mlflow.start_run(run_name=run_name, nested=True, tags=tags, experiment_id=experiment_id)


def logged_steps(run_id: str, key: str) -> set[int]:
    """The steps at which metric `key` is already logged in run `run_id`."""
    return {metric.step for metric in MlflowClient().get_metric_history(run_id, key)}


def in_run(link: RunLink | None, function: Callable[..., Result], *args: Any) -> Result:
    """`function(*args)`, with `link`'s run as the active MLflow run, so that everything it logs goes there.

    Where that run is already this thread's active run (or `link` is None), a plain call. Elsewhere (a
    Dask worker) the call runs in a new thread whose only active run is `link`'s: MLflow keeps active
    runs per thread, and the thread ends with the call, so no run is ever ended or left active here;
    the run's own process ends it. A run that is no longer RUNNING (its `kedro run` failed or was
    killed) is not reopened: `RunEnded` is raised instead.
    """
    active = mlflow.active_run()
    if link is None or (active is not None and active.info.run_id == link.run_id):
        return function(*args)

    def attached() -> Result:
        mlflow.set_tracking_uri(link.tracking_uri)
        status = MlflowClient().get_run(link.run_id).info.status
        if status != "RUNNING":
            raise RunEnded(f"MLflow run {link.run_id} is {status}: its kedro run has ended, so nothing runs for it")
        mlflow.start_run(run_id=link.run_id)
        return function(*args)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convbench-run") as thread:
        return thread.submit(contextvars.copy_context().run, attached).result()  # the caller's context variables too


class RunEnded(RuntimeError):
    """The run a task was to log into has ended."""


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
