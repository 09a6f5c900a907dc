"""Raw archive -> uint8 images, integer labels and class names."""

from convbench.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
