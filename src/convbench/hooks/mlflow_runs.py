"""What the MLflow run of a `kedro run` records beyond kedro-mlflow: its experiment, every node's time and
status, the git commit and env, and a true status when the run is killed or interrupted."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

from convbench.dataset_specs import dataset_of
from convbench.tracking import (
    BACKEND_TAG,
    ENV_TAG,
    KILLED_TAG,
    PROCESS_TAG,
    current_backend,
    mark_orphaned_runs_killed,
    this_process,
)

logger = logging.getLogger(__name__)


def git_commit(project_path: Path) -> tuple[str, bool] | None:
    """The HEAD commit of the project's git checkout and whether the work tree is dirty, if any."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_path, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=project_path, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit, bool(status.strip())


def experiment_of(pipeline_name: str) -> str:
    """The MLflow experiment of a pipeline: its dataset's (`cifar10_resnet` -> `cifar10`), `reproduce` for
    `reproduce` and `reproduce_<claim>`, or its own name (`predict`)."""
    if pipeline_name == "reproduce" or pipeline_name.startswith("reproduce_"):
        return "reproduce"
    return dataset_of(pipeline_name) or pipeline_name


class MlflowExperimentHook:
    """Puts each run in the experiment of its dataset (`cifar10_resnet` -> experiment `cifar10`), of
    `reproduce` for the claims, or of its pipeline when it has no dataset (`predict`).

    Runs before kedro-mlflow's own `before_pipeline_run`, which starts the MLflow run in the
    experiment its configuration names: it renames the experiment there and sets the
    configuration up again (`KedroMlflowConfig.setup`, public), which creates the experiment
    if need be.
    """

    def __init__(self) -> None:
        self._context = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._context = context

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        mlflow_config = getattr(self._context, "mlflow", None)
        names = run_params.get("pipeline_names") or ["__default__"]
        experiments = {experiment_of(name) for name in names}
        if mlflow_config is None or len(experiments) != 1:
            return
        mlflow_config.tracking.experiment.name = experiments.pop()
        mlflow_config.setup(self._context)


class MlflowNodeTrackingHook:
    """Records every node run in the active MLflow run.

    Per node: metric `node_time_s.<node>` (seconds, from its start until its last output is
    saved) and tag `node_status.<node>` (completed / failed; a node whose outputs could not
    all be saved is failed). At the end, `node_runs.json` lists all of them in run order.
    Also tags the run with the git commit, the pipeline names, the Kedro env and the Keras backend.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._unsaved: dict[str, set[str]] = {}
        self._records: list[dict[str, Any]] = []

    @hook_impl(trylast=True)  # after kedro-mlflow has started the MLflow run
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._started.clear()
        self._unsaved.clear()
        self._records.clear()
        if mlflow.active_run() is None:
            return
        tags = {
            "convbench.pipelines": ",".join(run_params.get("pipeline_names") or ["__default__"]),
            ENV_TAG: run_params.get("env") or "base",
            BACKEND_TAG: current_backend(),
        }
        commit = git_commit(Path(run_params.get("project_path") or "."))
        if commit:
            tags["mlflow.source.git.commit"], dirty = commit
            tags["convbench.git_dirty"] = str(dirty).lower()
        mlflow.set_tags(tags)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._started[node.name] = time.perf_counter()
        self._unsaved[node.name] = set(node.outputs)

    def _record(self, name: str, status: str) -> None:
        started = self._started.pop(name, None)
        seconds = time.perf_counter() - started if started is not None else 0.0
        self._unsaved.pop(name, None)
        self._records.append({"node": name, "status": status, "seconds": round(seconds, 4)})
        if mlflow.active_run() is None:
            return
        mlflow.log_metric(f"node_time_s.{name}", seconds)
        mlflow.set_tag(f"node_status.{name}", status)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        if not self._unsaved.get(node.name):
            self._record(node.name, "completed")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        unsaved = self._unsaved.get(node.name)
        if unsaved is None:
            return
        unsaved.discard(dataset_name)
        if not unsaved:
            self._record(node.name, "completed")

    @hook_impl(tryfirst=True)
    def on_node_error(self, node: Node) -> None:
        self._record(node.name, "failed")

    @property
    def records(self) -> list[dict[str, Any]]:
        """The nodes this hook has seen end, in order: `{"node", "status", "seconds"}` each."""
        return list(self._records)

    def _log_summary(self) -> None:
        log_node_runs(self._records)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._log_summary()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        for name in list(self._started):  # started, but outputs never all saved
            self._record(name, "failed")
        self._log_summary()


def log_node_runs(records: list[dict[str, Any]]) -> None:
    """Logs `node_runs.json` (the nodes' records, in the order they ended) to the active run, if any and if
    any node ran in this process or was reported to it (`convbench.runner.DaskRunner`)."""
    if mlflow.active_run() is not None and records:
        mlflow.log_dict({"nodes": records}, "node_runs.json")


class MlflowRunLifecycleHook:
    """Keeps MLflow's run status true when a `kedro run` is killed or interrupted.

    - At the start, tags the run with its process (`convbench.tracking.PROCESS_TAG`) and ends as
      KILLED every RUNNING run whose process is gone: a `kill -9` or a power cut leaves its run
      RUNNING, and the next `kedro run` on the project closes it. A resumed training tags its own
      run with the killed one (`convbench.resumed_from_run`), so the two are linked.
    - On SIGTERM / Ctrl-C during training (`TrainingInterrupted`), ends the run as KILLED instead
      of FAILED and logs the command that resumes.
    The leaderboard and `predict` read FINISHED runs only, so neither ever picks a killed run.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None

    @hook_impl(trylast=True)  # after kedro-mlflow has started the MLflow run
    def before_pipeline_run(self) -> None:
        active = mlflow.active_run()
        self._run_id = active.info.run_id if active else None
        if active is None:
            return
        mlflow.set_tag(PROCESS_TAG, this_process())
        for run_id in mark_orphaned_runs_killed():
            logger.warning("MLflow run %s was left RUNNING by a killed process: it is now KILLED", run_id)

    @hook_impl(trylast=True)  # after kedro-mlflow has ended the run as FAILED
    def on_pipeline_error(self, error: Exception) -> None:
        interrupted = _training_interrupted(error)
        if interrupted is None:
            return
        command = shlex.join(["kedro", *sys.argv[1:]]) if Path(sys.argv[0]).name == "kedro" else "the same kedro run"
        if self._run_id:
            client = mlflow.MlflowClient()
            client.set_tag(self._run_id, KILLED_TAG, interrupted.signal_name)
            client.set_terminated(self._run_id, status="KILLED")
        logger.error(
            "%s: training stopped after epoch %d and %d batches; checkpoint in %s. MLflow run %s is KILLED. "
            "Resume with: %s",
            interrupted.signal_name,
            interrupted.epochs_done,
            interrupted.steps_into_epoch,
            interrupted.checkpoint,
            self._run_id,
            command,
        )


def _training_interrupted(error: BaseException | None):
    """The `TrainingInterrupted` in `error`'s chain of causes, if any (imported lazily: no TensorFlow here)."""
    while error is not None:
        if type(error).__name__ == "TrainingInterrupted" and hasattr(error, "steps_into_epoch"):
            return error
        error = error.__cause__ or error.__context__
    return None
