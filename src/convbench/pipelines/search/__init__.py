"""`{dataset}_{architecture}_search`: an Optuna study over the recipe, trials as nested MLflow runs."""

from convbench.pipelines.search.pipeline import create_pipeline

__all__ = ["create_pipeline"]
