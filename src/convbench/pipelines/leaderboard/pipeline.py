"""`{dataset}_leaderboard`, and the last step of `{dataset}` (every architecture on one dataset)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from convbench.pipelines.binding import bind
from convbench.pipelines.leaderboard.nodes import build_leaderboard


def create_pipeline(dataset: str = "cifar10", architectures: Iterable[str] = (), **kwargs) -> Pipeline:
    """The leaderboard of `dataset`, after the metrics tables of `architectures` (none: MLflow runs only).

    Namespaced `dataset`: it writes `<dataset>.leaderboard`, `_markdown` and `_plot`, and reads
    `<dataset>.<architecture>.metrics_table` of each architecture.
    """
    tables = {
        f"{architecture}_metrics_table": f"{dataset}.{architecture}.metrics_table" for architecture in architectures
    }
    template = Pipeline(
        [
            Node(
                bind(build_leaderboard, dataset=dataset),
                inputs=list(tables) or None,
                outputs=["leaderboard", "leaderboard_markdown", "leaderboard_plot"],
                name="build_leaderboard",
            )
        ]
    )
    return Pipeline(template, namespace=dataset, inputs=tables or None, tags=["reporting", "leaderboard", dataset])
