"""The lock policy of a run: what it holds alone, what it shares, for how long (`convbench.locking`)."""

from __future__ import annotations

import os
from pathlib import Path

from kedro.framework.hooks import hook_impl

from convbench.dataset_specs import DATASETS
from convbench.hooks.checkpoints import CHECKPOINT_SUFFIX
from convbench.locking import LOCK_WAIT_ENV, DatasetLocks

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
