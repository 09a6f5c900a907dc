"""Request inputs as a uint8 image batch of the model's shape: arrays, encoded files, or a DataFrame of either."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from convbench.data.images import decode_image, resize_image

IMAGE_COLUMN = "image"
"""Column of a DataFrame input that holds encoded images (bytes, or base64 text in JSON)."""

MAX_DECODED_PIXELS = 4096 * 4096
"""The largest image (width x height) the decoder accepts, read from the file's header before decoding."""

MAX_BATCH_IMAGES = 1024
"""The most images one call (one HTTP request to `mlflow models serve`) may hold."""


class ImageInputError(MlflowException, ValueError):
    """An input image does not fit the model; the message names the image and the expected shape.

    An `MlflowException` with INVALID_PARAMETER_VALUE, so `mlflow models serve` answers 400 with
    this message (any other exception becomes a generic message with the text in a stack trace).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def to_image_batch(
    model_input: Any, input_shape: Sequence[int], *, resize: bool = False, names: Sequence[str] | None = None
) -> np.ndarray:
    """uint8 images [N, H, W, C] of `input_shape` from arrays, encoded files or a DataFrame of either.

    Args:
        model_input: An integer array [N, H, W, C] or [H, W, C] of values 0-255; a sequence (or
            string array) of such images or of encoded PNG/JPEG/BMP files (bytes, or base64 text); or a
            DataFrame whose `image` column (or only column) holds them.
        input_shape: (H, W, C) the model takes.
        resize: Resize images of another height and width (OpenCV) instead of refusing them.
        names: What to call each image in messages (file names); "image <index>" by default.

    Raises:
        ImageInputError: An image cannot be decoded, declares more than `MAX_DECODED_PIXELS`, is not
            integers 0-255, has another channel count (arrays; encoded images are converted), or
            another size when `resize` is false; or the batch holds more than `MAX_BATCH_IMAGES`.
            The message names the image and the expected shape.
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
        try:
            return decode_image(bytes(item), shape[-1], name, max_pixels=MAX_DECODED_PIXELS)
        except ValueError as exc:
            raise ImageInputError(f"{exc}; the model takes images of shape {_shape_text(shape)}") from exc
    array = np.asarray(item)
    if array.dtype.kind not in "iu":
        raise ImageInputError(f"{name}: {expected}; found {array.dtype} values (pixels are integers 0-255)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ImageInputError(f"{name}: {expected}; found values from {array.min()} to {array.max()}")
    if array.ndim == 2:
        array = array[..., None]
    return array.astype(np.uint8)


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
