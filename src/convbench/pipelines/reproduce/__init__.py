"""`reproduce` and `reproduce_<claim>`: published results (`convbench.claims`) trained, measured and reported."""

from convbench.pipelines.reproduce.pipeline import create_pipeline

__all__ = ["create_pipeline"]
