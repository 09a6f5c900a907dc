"""Kedro hooks: the project path for the configuration, pre-flight checks, per-dataset MLflow experiments, a record of every node run in the
MLflow run, and checkpoint clean-up.

`settings.py` imports this module for every `kedro` command, so it imports only the dataset specs and
`convbench.tracking` of the project: no pipeline, Keras or TensorFlow (tests/test_config.py runs `kedro --help` to check).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node
from omegaconf import OmegaConf

from convbench.dataset_specs import DATASETS, dataset_of
from convbench.locking import LOCK_WAIT_ENV, DatasetLocks
from convbench.metrics import METRICS_TABLE
from convbench.tracking import ENV_TAG, KILLED_TAG, PROCESS_TAG, mark_orphaned_runs_killed, this_process

logger = logging.getLogger(__name__)

PREFLIGHT_TAG = "preflight"
"""Tag of cheap nodes that check what the user must provide; `PreflightHook` runs them first."""

CHECKPOINT_SUFFIX = ".checkpoint_dir"
"""Catalog entries ending so are training checkpoint folders (`<dataset>.<arch>.checkpoint_dir`)."""


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


PROJECT_PATH_RESOLVER = "convbench.project_path"
"""`${convbench.project_path:}` in the configuration: the Kedro project's folder (see `ProjectPathResolverHook`)."""

TRACKING_URI_RESOLVER = "convbench.tracking_uri"
"""`${convbench.tracking_uri:<default>}` in the configuration: `MLFLOW_TRACKING_URI` where set, else `<default>`."""

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri(default: str) -> str:
    """The MLflow tracking URI of this machine: `MLFLOW_TRACKING_URI` if set (and not empty), else `default`."""
    return os.environ.get(TRACKING_URI_ENV) or default


class ProjectPathResolverHook:
    """Lets the configuration name files in the project's folder, wherever Kedro is started from, and
    lets each machine choose its MLflow tracking server without editing the configuration.

    `mlflow.yml` points at `${convbench.tracking_uri:sqlite:///${convbench.project_path:}/mlflow.db}`:
    a shared server when `MLFLOW_TRACKING_URI` is set (kedro-mlflow reads that variable only when
    `mlflow.yml` names no URI), else the embedded store. kedro-mlflow leaves sqlite URIs as they
    are, so a relative one would open another, empty store when the working folder is not the
    project's (a notebook in `notebooks/` under `kedro jupyter`). A URI in `conf/local/mlflow.yml`
    still wins over both. Runs before kedro-mlflow reads `mlflow.yml`.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        project_path = str(Path(context.project_path).resolve())
        OmegaConf.register_resolver(PROJECT_PATH_RESOLVER, lambda: project_path, replace=True)
        OmegaConf.register_resolver(TRACKING_URI_RESOLVER, tracking_uri, replace=True)


class PreflightHook:
    """Runs the pipeline's nodes tagged `preflight` before anything else.

    They check what no node can fetch (a file the user must place, such as FER2013), so a run
    that cannot finish stops at once with their message instead of after earlier nodes ran.
    They read parameters only, and run again in their place in the pipeline.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        check_prepared_data(pipeline, catalog, run_params.get("env"))
        for node in pipeline.only_nodes_with_tags(PREFLIGHT_TAG).nodes:
            node.run({name: catalog.load(name) for name in node.inputs})


class MissingPreparedDataError(RuntimeError):
    """A pipeline reads a dataset's arrays that no earlier run has written."""


def check_prepared_data(pipeline, catalog, env: str | None = None) -> None:
    """Fails at once, with the command that prepares them, when a pipeline's dataset inputs are missing.

    Pipelines that read prepared data without producing it (`<dataset>_<arch>_search`, or a
    training run filtered with `--tags`) would otherwise stop at their first node on a file error.
    """
    missing: dict[str, list[str]] = {}
    for name in sorted(pipeline.inputs()):
        dataset = name.split(".", 1)[0]
        if dataset in DATASETS and name.count(".") == 1 and not catalog.exists(name):
            described = catalog.get(name)._describe() if hasattr(catalog, "get") else {}
            missing.setdefault(dataset, []).append(str(described.get("filepath", name)))
    if missing:
        env_flag = f" --env={env}" if env and env != "local" else ""
        raise MissingPreparedDataError(
            "; ".join(
                f"This pipeline reads the prepared {dataset} data, which is not there yet ({', '.join(files)}). "
                f"Prepare it once with: kedro run --pipelines={dataset}_data{env_flag}"
                for dataset, files in missing.items()
            )
        )


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
    Also tags the run with the git commit, the pipeline names and the Kedro env.
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

    def _log_summary(self) -> None:
        if mlflow.active_run() is not None and self._records:
            mlflow.log_dict({"nodes": self._records}, "node_runs.json")

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._log_summary()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        for name in list(self._started):  # started, but outputs never all saved
            self._record(name, "failed")
        self._log_summary()


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


DATA_WRITING_TAGS = frozenset({"ingestion", "preprocessing"})
"""Nodes with these tags write a dataset's shared arrays (`<dataset>.train_images`, splits, statistics)."""


def locked_names(pipeline) -> tuple[list[str], list[str]]:
    """What a run must hold alone and what it may share (see `convbench.locking`).

    Alone: every dataset whose ingestion or preprocessing nodes it runs, and every
    `<dataset>.<architecture>` whose checkpoints it trains from. Shared: the other datasets it reads.
    """
    writes = {
        node.namespace.split(".")[0]
        for node in pipeline.nodes
        if DATA_WRITING_TAGS & set(node.tags) and node.namespace and node.namespace.split(".")[0] in DATASETS
    }
    writes |= {name.removesuffix(CHECKPOINT_SUFFIX) for name in pipeline.datasets() if name.endswith(CHECKPOINT_SUFFIX)}
    reads = {name.split(".", 1)[0] for name in pipeline.datasets()} & set(DATASETS)
    return sorted(writes), sorted(reads - writes)


class DatasetLockHook:
    """Holds `convbench.locking.DatasetLocks` on what the pipeline touches, for the whole run (`locked_names`).

    A second `kedro run` that would rewrite a dataset another run uses, or train the same
    architecture's checkpoints, stops at once with a message naming the first (or waits
    `CONVBENCH_LOCK_WAIT_S` seconds). Runs that only read prepared data (`--tags=<arch>`, search
    workers) run side by side; runs of other datasets, or of the smoke env (its own data folder),
    are not held up.
    """

    def __init__(self) -> None:
        self._data_root: Path | None = None
        self._locks: DatasetLocks | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        data_root = Path(context.config_loader["globals"].get("data_root", "data"))
        self._data_root = data_root if data_root.is_absolute() else Path(context.project_path) / data_root

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline) -> None:
        writes, reads = locked_names(pipeline)
        if not (writes or reads) or self._data_root is None:
            return
        self._locks = DatasetLocks(self._data_root, writes, float(os.environ.get(LOCK_WAIT_ENV, "0")), reads=reads)
        self._locks.acquire()

    def _release(self) -> None:
        if self._locks is not None:
            self._locks.release()
            self._locks = None

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        self._release()


class CheckpointCleanupHook:
    """Removes the training checkpoints of a Kedro run once the whole run has succeeded.

    Until then they stay, so a run that fails after training (saving, reporting) resumes
    without training again.
    """

    @hook_impl
    def after_pipeline_run(self, pipeline, catalog) -> None:
        for name in sorted(pipeline.datasets()):
            if name.endswith(CHECKPOINT_SUFFIX):
                shutil.rmtree(catalog.load(name), ignore_errors=True)


class ResultSummaryHook:
    """Ends a successful run's log with its results: the test accuracy of every architecture it trained,
    and where its metrics table is, so `make run` finishes on the number it was run for."""

    def __init__(self) -> None:
        self._tables: dict[str, Any] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._tables = {}

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        for name, value in outputs.items():
            if name.endswith(f".{METRICS_TABLE}"):
                self._tables[name.removesuffix(f".{METRICS_TABLE}")] = value

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        for namespace, table in sorted(self._tables.items()):
            row = table.iloc[0]
            dataset, architecture = namespace.split(".", 1)
            logger.info(
                "Result: %s on %s: test accuracy %.2f%% (%d epochs, %.1f min of training); the metrics "
                "table is 08_reporting/%s/%s/metrics.md",
                architecture,
                dataset,
                100 * float(row["test_accuracy"]),
                int(row["epochs"]),
                float(row["wall_time_s"]) / 60,
                dataset,
                architecture,
            )
