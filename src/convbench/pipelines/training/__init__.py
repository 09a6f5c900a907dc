"""One training template, instantiated per dataset x architecture with namespaces."""

from convbench.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
