"""Metrics tables and plots of one trained model."""

from convbench.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
