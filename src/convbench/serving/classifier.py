"""`ImageClassifier`: a Keras classifier of uint8 images with its class names, as an MLflow pyfunc."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ParamSchema, ParamSpec

from convbench.serving.inputs import to_image_batch

RESULT_COLUMNS = ("class", "probability")
"""The first output columns; one column per class name follows."""

KERAS_ARTIFACT = "keras_model"
"""The name of the `.keras` file among the logged model's artifacts (`context.artifacts`)."""

DIRECT_CALL_IMAGES = 256
"""Up to this many images, `predict` calls the model once directly (about 10x faster per request
than `Model.predict`, which sets up a data pipeline on every call)."""


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """A Keras classifier of uint8 images (z-score inside) with its class names, as an MLflow pyfunc.

    Logged with its Keras model as the MLflow artifact `KERAS_ARTIFACT` (`save_artifacts`); the
    pickled object holds the class names and the input shape, and `load_context` loads the model.
    """

    def __init__(self, class_names: Sequence[str], input_shape: Sequence[int], model=None) -> None:
        clashing = set(RESULT_COLUMNS) & set(class_names)
        if clashing:
            raise ValueError(f"class names may not be {sorted(clashing)}: they name output columns")
        self.class_names = list(class_names)
        self.input_shape = tuple(int(size) for size in input_shape)
        self._model = model

    @classmethod
    def from_keras(cls, model, class_names: Sequence[str]) -> ImageClassifier:
        """Wrap a Keras model that takes uint8 images [N, H, W, C] and returns class probabilities."""
        return cls(class_names, model.input_shape[1:], model)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def save_artifacts(self, folder: Path) -> dict[str, str]:
        """Saves the Keras model into `folder`; the `artifacts` to log with this classifier."""
        path = Path(folder) / "model.keras"
        self.keras_model().save(path)
        return {KERAS_ARTIFACT: str(path)}

    def load_context(self, context) -> None:
        """Loads the Keras model from the logged artifact, or, in a classifier logged before the
        model was an artifact, from the `.keras` bytes pickled inside (`keras_file`)."""
        if KERAS_ARTIFACT in context.artifacts:
            self._model = load_keras_file(context.artifacts[KERAS_ARTIFACT])
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(self.__dict__.pop("keras_file"))
            self._model = load_keras_file(path)

    def keras_model(self):
        """The Keras model (after `from_keras`, or once MLflow has loaded the classifier)."""
        if self._model is None:
            raise RuntimeError("The classifier has no Keras model yet: load it with mlflow.pyfunc.load_model")
        return self._model

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Class probabilities of every image of `model_input` (see `convbench.serving` for formats)."""
        resize = bool((params or {}).get("resize", False))
        images = to_image_batch(model_input, self.input_shape, resize=resize)
        model = self.keras_model()
        if len(images) <= DIRECT_CALL_IMAGES:  # one call: no per-call set-up of Keras' predict loop
            probabilities = keras_output(model, images)
        else:
            probabilities = model.predict(images, batch_size=256, verbose=0)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        return probability_table(probabilities, self.class_names)

    def signature(self) -> ModelSignature:
        """No input schema (arrays and encoded images are both accepted), and the `resize` parameter."""
        return ModelSignature(inputs=None, params=ParamSchema([ParamSpec("resize", "boolean", False)]))


def load_keras_file(path: str | Path):
    """A `.keras` file as a Keras model, convbench's own layers included."""
    import keras

    from convbench.keras_objects import import_custom_objects

    import_custom_objects()
    return keras.saving.load_model(path)


def keras_output(model, images: np.ndarray) -> np.ndarray:
    """The model's output for one batch, in inference mode."""
    return np.asarray(model(images, training=False))


def load_keras_model(model_uri: str):
    """The Keras model inside a logged classifier, e.g. `runs:/<run_id>/cifar10_resnet_classifier`.

    Each training run logs its model once, as this pyfunc with the `.keras` file as its artifact;
    this is how to get the Keras model back (raw uint8 images in, probabilities out) for
    fine-tuning or export.
    """
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().keras_model()


def probability_table(probabilities: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: the most likely class, its probability, then every class's probability."""
    top = probabilities.argmax(axis=1)
    table = pd.DataFrame(
        {"class": [class_names[index] for index in top], "probability": probabilities[np.arange(len(top)), top]}
    )
    return pd.concat([table, pd.DataFrame(probabilities, columns=list(class_names))], axis=1)
