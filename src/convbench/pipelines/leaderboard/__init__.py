"""The `{dataset}` leaderboard: every architecture's results on one dataset, side by side."""

from convbench.pipelines.leaderboard.pipeline import create_pipeline

__all__ = ["create_pipeline"]
