"""`predict`: classify a folder of image files with a logged MLflow model."""

from convbench.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]
