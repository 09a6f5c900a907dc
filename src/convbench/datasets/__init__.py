"""Kedro datasets that kedro-datasets lacks."""

from convbench.datasets.mlflow_classifier_dataset import MlflowClassifierDataset
from convbench.datasets.numpy_dataset import NumpyDataset
from convbench.datasets.path_dataset import PathDataset

__all__ = ["MlflowClassifierDataset", "NumpyDataset", "PathDataset"]
