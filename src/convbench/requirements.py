"""The pinned requirements of the MLflow models a run logs, read from this environment (no inference).

MLflow would otherwise infer them by loading each model in a subprocess: about 10 s per logged
Keras model on a 2-core CPU, minutes for the whole zoo.
"""

from __future__ import annotations

import importlib.metadata

REQUIREMENTS = ("keras", "numpy", "pandas", "opencv-python-headless", "mlflow", "pydantic")
"""Distributions a logged model needs at prediction time (pydantic: loading the model imports the modules that register
convbench's Keras classes, which check their settings with the recipe schema, `convbench.training.recipe`)."""

TENSORFLOW_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow")
"""One of these is installed (the Makefile picks it); the logged model requires the same one."""


def pip_requirements() -> list[str]:
    """This environment's TensorFlow package and `REQUIREMENTS`, pinned to the installed versions."""
    pinned = []
    for name in (*REQUIREMENTS, *TENSORFLOW_DISTRIBUTIONS):
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            if name not in TENSORFLOW_DISTRIBUTIONS:
                raise
    return pinned
