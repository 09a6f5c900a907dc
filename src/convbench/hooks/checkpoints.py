"""Training checkpoints outlive a failed run and are removed once the whole run has succeeded."""

from __future__ import annotations

import shutil

from kedro.framework.hooks import hook_impl

CHECKPOINT_SUFFIX = ".checkpoint_dir"
"""Catalog entries ending so are training checkpoint folders (`<dataset>.<arch>.checkpoint_dir`)."""


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
