"""Splits and z-score statistics from the training split, plus the dataset card."""

from convbench.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
