"""Kedro datasets that kedro-datasets lacks."""

from convbench.datasets.numpy_dataset import NumpyDataset
from convbench.datasets.path_dataset import PathDataset

__all__ = ["NumpyDataset", "PathDataset"]
