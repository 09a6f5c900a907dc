"""`{dataset}_leaderboard`, and the last step of `{dataset}` (every architecture on one dataset)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from convbench.pipelines.binding import bind
from convbench.pipelines.leaderboard.nodes import build_leaderboard


def create_pipeline(dataset: str = "cifar10", architectures: Iterable[str] = (), **kwargs) -> Pipeline:
    """The leaderboard of `dataset`, after the metrics tables of `architectures` (none: MLflow runs only)."""
    return Pipeline(
        [
            Node(
                bind(build_leaderboard, dataset=dataset),
                inputs=[f"{dataset}.{architecture}.metrics_table" for architecture in architectures] or None,
                outputs=[f"{dataset}.leaderboard", f"{dataset}.leaderboard_markdown", f"{dataset}.leaderboard_plot"],
                name=f"{dataset}.build_leaderboard",
            )
        ],
        tags=["reporting", "leaderboard", dataset],
    )
