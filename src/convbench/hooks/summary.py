"""The log of a successful run ends with its results."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline.node import Node

from convbench.metrics import METRICS_TABLE

logger = logging.getLogger(__name__)


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
