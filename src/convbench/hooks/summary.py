"""The log of a successful run ends with its results."""

from __future__ import annotations

import logging

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline

from convbench.metrics import METRICS_TABLE

logger = logging.getLogger(__name__)


class ResultSummaryHook:
    """Ends a successful run's log with its results: the test accuracy of every architecture it trained,
    and where its metrics table is, so `make run` finishes on the number it was run for.

    The tables are read from the catalog once the run has ended, so the summary is the same whatever
    process (`convbench.runner.DaskRunner`'s workers) made them.
    """

    @hook_impl(trylast=True)
    def after_pipeline_run(self, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        for name in sorted(pipeline.all_outputs()):
            if not name.endswith(f".{METRICS_TABLE}") or not catalog.exists(name):
                continue
            row = catalog.load(name).iloc[0]
            dataset, architecture = name.removesuffix(f".{METRICS_TABLE}").split(".", 1)
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
