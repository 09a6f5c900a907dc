"""A trained model as an MLflow pyfunc that takes raw images: uint8 arrays or encoded PNG/JPEG bytes.

`ImageClassifier` is what every training run logs next to its Keras model (`<dataset>_<arch>_classifier`):

    mlflow models predict -m runs:/<run_id>/cifar10_resnet_classifier -i images.json -t json --env-manager local

Accepted input (`images.json`):

* `{"inputs": [...]}`: integer pixel values 0-255, shape [N, H, W, C] (or one image [H, W, C]) of
  the training shape (`input_shape` in the model's metadata), nothing converted (floats, such as
  images already scaled to [0, 1], are refused);
* `{"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG/JPEG>"], ...]}}`: encoded files,
  decoded with OpenCV; colour or grey, converted to the model's channels.

Images of another height and width are refused unless the parameter `resize` is true
(`{"inputs": ..., "params": {"resize": true}}`), then resized with OpenCV. The output has one row
per image: `class` (the most likely class name), `probability` (its probability), then one column
per class name with its probability.
"""

from __future__ import annotations

import base64
import binascii
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import ParamSchema, ParamSpec

from convbench.data.images import resize_image

IMAGE_COLUMN = "image"
"""Column of a DataFrame input that holds encoded images (bytes, or base64 text in JSON)."""

RESULT_COLUMNS = ("class", "probability")
"""The first output columns; one column per class name follows."""


MAX_DECODED_PIXELS = 4096 * 4096
"""The largest image (width x height) the decoder accepts, read from the file's header before decoding."""

DIRECT_CALL_IMAGES = 256
"""Up to this many images, `predict` calls the model once directly (about 10x faster per request
than `Model.predict`, which sets up a data pipeline on every call)."""

MAX_BATCH_IMAGES = 1024
"""The most images one call (one HTTP request to `mlflow models serve`) may hold."""


class ImageInputError(MlflowException, ValueError):
    """An input image does not fit the model; the message names the image and the expected shape.

    An `MlflowException` with INVALID_PARAMETER_VALUE, so `mlflow models serve` answers 400 with
    this message (any other exception becomes a generic message with the text in a stack trace).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """A Keras classifier of uint8 images (z-score inside) with its class names, as an MLflow pyfunc.

    The Keras model travels inside the pickled object as the bytes of its `.keras` file, so the
    logged MLflow model is self-contained.
    """

    def __init__(self, keras_file: bytes, class_names: Sequence[str], input_shape: Sequence[int]) -> None:
        clashing = set(RESULT_COLUMNS) & set(class_names)
        if clashing:
            raise ValueError(f"class names may not be {sorted(clashing)}: they name output columns")
        self.keras_file = keras_file
        self.class_names = list(class_names)
        self.input_shape = tuple(int(size) for size in input_shape)
        self._model = None

    @classmethod
    def from_keras(cls, model, class_names: Sequence[str]) -> ImageClassifier:
        """Wrap a Keras model that takes uint8 images [N, H, W, C] and returns class probabilities."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            model.save(path)
            return cls(path.read_bytes(), class_names, model.input_shape[1:])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def load_context(self, context) -> None:
        self.keras_model()

    def keras_model(self):
        """The Keras model, loaded from the embedded `.keras` bytes on first use."""
        if self._model is None:
            import keras

            from convbench.keras_objects import import_custom_objects

            import_custom_objects()
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.keras"
                path.write_bytes(self.keras_file)
                self._model = keras.saving.load_model(path)
        return self._model

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Class probabilities of every image of `model_input` (see the module docstring for formats)."""
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


def keras_output(model, images: np.ndarray) -> np.ndarray:
    """The model's output for one batch, in inference mode."""
    return np.asarray(model(images, training=False))


def load_keras_model(model_uri: str):
    """The Keras model inside a logged classifier, e.g. `runs:/<run_id>/cifar10_resnet_classifier`.

    Each training run logs its model once, as this pyfunc with the `.keras` file inside; this is
    how to get the Keras model back (raw uint8 images in, probabilities out) for fine-tuning or export.
    """
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().keras_model()


def probability_table(probabilities: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: the most likely class, its probability, then every class's probability."""
    top = probabilities.argmax(axis=1)
    table = pd.DataFrame(
        {"class": [class_names[index] for index in top], "probability": probabilities[np.arange(len(top)), top]}
    )
    return pd.concat([table, pd.DataFrame(probabilities, columns=list(class_names))], axis=1)


def to_image_batch(
    model_input: Any, input_shape: Sequence[int], *, resize: bool = False, names: Sequence[str] | None = None
) -> np.ndarray:
    """uint8 images [N, H, W, C] of `input_shape` from arrays, encoded files or a DataFrame of either.

    Args:
        model_input: An integer array [N, H, W, C] or [H, W, C] of values 0-255; a sequence (or
            string array) of such images or of encoded PNG/JPEG files (bytes, or base64 text); or a
            DataFrame whose `image` column (or only column) holds them.
        input_shape: (H, W, C) the model takes.
        resize: Resize images of another height and width (OpenCV) instead of refusing them.
        names: What to call each image in messages (file names); "image <index>" by default.

    Raises:
        ImageInputError: An image cannot be decoded, is not integers 0-255, has another channel count
            (arrays; encoded images are converted), or another size when `resize` is false. The
            message names the image and the expected shape.
    """
    shape = tuple(int(size) for size in input_shape)
    expected = _shape_text(shape)
    if isinstance(model_input, pd.DataFrame):
        column = IMAGE_COLUMN if IMAGE_COLUMN in model_input else None
        if column is None and len(model_input.columns) != 1:
            raise ImageInputError(
                f"expected a column {IMAGE_COLUMN!r} of encoded images, found the columns {list(model_input.columns)}"
            )
        model_input = list(model_input[column or model_input.columns[0]])
    if isinstance(model_input, np.ndarray) and model_input.dtype.kind not in "OUS":
        if model_input.ndim not in (3, 4):
            raise ImageInputError(
                f"expected images of shape [N, {expected[1:]} (or one {expected}), "
                f"found an array of shape {list(model_input.shape)}"
            )
        images = [model_input] if model_input.ndim == 3 else list(model_input)
    else:
        images = list(np.ravel(model_input)) if isinstance(model_input, np.ndarray) else list(model_input)
    if len(images) > MAX_BATCH_IMAGES:
        raise ImageInputError(
            f"{len(images):,} images in one call; at most {MAX_BATCH_IMAGES:,} are accepted: send them in smaller batches"
        )
    names = list(names) if names is not None else [f"image {index}" for index in range(len(images))]
    batch = np.empty((len(images), *shape), dtype=np.uint8)
    for index, (image, name) in enumerate(zip(images, names)):
        batch[index] = _fit(_as_image(image, name, shape), name, shape, resize)
    return batch


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _as_image(item: Any, name: str, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as an [H, W, C] array: decoded (and converted to the model's channels) if it is a file."""
    expected = f"expected a uint8 image {_shape_text(shape)} or a PNG/JPEG file"
    if isinstance(item, str | np.str_):
        try:
            item = base64.b64decode(str(item), validate=True)
        except binascii.Error as exc:
            raise ImageInputError(
                f"{name}: {expected} (base64 text in JSON); found text that is not base64 ({exc})"
            ) from exc
    if isinstance(item, bytes | bytearray | memoryview | np.bytes_):
        return decode_image(bytes(item), shape[-1], name, expected_shape=shape)
    array = np.asarray(item)
    if array.dtype.kind not in "iu":
        raise ImageInputError(f"{name}: {expected}; found {array.dtype} values (pixels are integers 0-255)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ImageInputError(f"{name}: {expected}; found values from {array.min()} to {array.max()}")
    if array.ndim == 2:
        array = array[..., None]
    return array.astype(np.uint8)


def decode_image(
    data: bytes,
    channels: int,
    name: str,
    expected_shape: Sequence[int] | None = None,
    max_pixels: int = MAX_DECODED_PIXELS,
) -> np.ndarray:
    """A PNG/JPEG file's pixels as uint8 [H, W, channels] (RGB or grey), whatever its own colour type.

    The header is read first: a file that is not PNG, JPEG or BMP, or that declares more than
    `max_pixels` pixels (a decompression bomb), is refused before any pixel is decoded.

    Raises:
        ImageInputError: `data` is not a PNG/JPEG/BMP file, is too large, or OpenCV cannot decode
            it; the message names the image (and the shape the model expects, if given).
    """
    wanted = (
        f", expected a PNG, JPEG or BMP image (the model takes {_shape_text(expected_shape)})" if expected_shape else ""
    )
    size = declared_size(data)
    if size is None:
        raise ImageInputError(f"{name}: could not decode {len(data):,} bytes as a PNG, JPEG or BMP image{wanted}")
    width, height = size
    if width * height > max_pixels:
        raise ImageInputError(
            f"{name}: the file declares {width:,} x {height:,} pixels; at most {max_pixels:,} "
            "pixels are decoded (a smaller image, or resize it before sending)"
        )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if decoded is None:
        raise ImageInputError(f"{name}: could not decode {len(data):,} bytes as a PNG, JPEG or BMP image{wanted}")
    if decoded.dtype != np.uint8:
        decoded = (decoded / 257).round().astype(np.uint8)  # 16-bit PNG
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    if decoded.shape[-1] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        return decoded if decoded.shape[-1] == 1 else cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)[..., None]
    rgb = (
        cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
        if decoded.shape[-1] == 1
        else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    )
    return rgb


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (baseline, progressive, lossless...): they hold the image size."""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP file's header, without decoding it; None if `data`
    is none of these formats or its header is cut short."""
    try:
        if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means rows stored top-down
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's first start-of-frame segment; struct.error if none is complete."""
    offset = 2
    while True:
        while data[offset : offset + 1] == b"\xff" and data[offset + 1 : offset + 2] == b"\xff":
            offset += 1  # fill bytes
        marker, length = struct.unpack(">xBH", data[offset : offset + 4])
        if marker in JPEG_SOF_MARKERS:
            height, width = struct.unpack(">xHH", data[offset + 4 : offset + 9])
            return width, height
        if length < 2:
            raise struct.error("bad segment length")
        offset += 2 + length


def _fit(image: np.ndarray, name: str, shape: tuple[int, int, int], resize: bool) -> np.ndarray:
    height, width, channels = shape
    if image.ndim != 3 or image.shape[-1] != channels:
        raise ImageInputError(
            f"{name}: expected shape {_shape_text(shape)} ({channels} channel(s)), found {list(image.shape)}"
        )
    if image.shape[:2] == (height, width):
        return image
    if not resize:
        raise ImageInputError(
            f"{name}: expected shape {_shape_text(shape)}, found {list(image.shape)}; "
            "pass the parameter resize=true to resize it"
        )
    return resize_image(image, (height, width))


def serve_command(
    model_uri: str, port: int, host: str = "127.0.0.1", workers: int = 1
) -> tuple[list[str], dict[str, str]]:
    """The `mlflow models serve` command for a logged classifier, and the environment to run it in.

    MLflow starts `uvicorn` by name, so the environment puts this interpreter's `bin` folder (the
    project's venv) first on PATH: serving then works from a shell where the venv is not activated.
    """
    import os
    import sys

    bin_folder = str(Path(sys.executable).parent)
    command = [
        str(Path(bin_folder) / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--env-manager",
        "local",
    ]
    return command, {**os.environ, "PATH": os.pathsep.join([bin_folder, os.environ.get("PATH", "")])}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m convbench.serving <model_uri> [--port 5001] [--host 127.0.0.1] [--workers 1]`: serves a
    logged classifier with `mlflow models serve` (`serve_command`), from any shell; `make serve` runs it."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m convbench.serving", description=main.__doc__)
    parser.add_argument("model_uri", help="e.g. runs:/<run_id>/cifar10_resnet_classifier")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    command, env = serve_command(args.model_uri, args.port, args.host, args.workers)
    print(
        f"Serving {args.model_uri} at http://{args.host}:{args.port}/invocations (tracking store {env.get('MLFLOW_TRACKING_URI', 'MLflow default')})",
        flush=True,
    )
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
