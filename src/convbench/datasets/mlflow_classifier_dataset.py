"""A Kedro dataset that logs an `ImageClassifier` to the active MLflow run as a pyfunc model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError

import convbench
from convbench.requirements import pip_requirements
from convbench.serving import ImageClassifier


class MlflowClassifierDataset(AbstractDataset[ImageClassifier, Any]):
    """Saves an `ImageClassifier` as the MLflow model `name` of the active run; loads it as a pyfunc.

    The model carries its Keras model (the artifact `KERAS_ARTIFACT`), its own code (`convbench`,
    through `code_paths`) and pinned requirements, so `mlflow models predict -m runs:/<run_id>/<name>
    --env-manager local` works in any environment with these packages, convbench installed or not.
    """

    def __init__(self, *, name: str, metadata: dict[str, Any] | None = None) -> None:
        self._name = name
        self._run_id: str | None = None
        self.metadata = metadata

    def save(self, data: ImageClassifier) -> None:
        run = mlflow.active_run()
        if run is None:
            raise DatasetError(
                f"Logging the MLflow model {self._name!r} needs an active MLflow run (kedro run starts one)"
            )
        with tempfile.TemporaryDirectory() as folder:
            mlflow.pyfunc.log_model(
                name=self._name,
                python_model=data,
                artifacts=data.save_artifacts(Path(folder)),
                signature=data.signature(),
                pip_requirements=pip_requirements(),
                code_paths=[str(Path(convbench.__file__).parent)],
                metadata={"class_names": data.class_names, "input_shape": list(data.input_shape)},
            )
        self._run_id = run.info.run_id

    def load(self) -> Any:
        run_id = self._run_id or (mlflow.active_run().info.run_id if mlflow.active_run() else None)
        if run_id is None:
            raise DatasetError(f"No MLflow run to load the model {self._name!r} from")
        return mlflow.pyfunc.load_model(f"runs:/{run_id}/{self._name}")

    def _describe(self) -> dict[str, Any]:
        return {"name": self._name, "run_id": self._run_id}
