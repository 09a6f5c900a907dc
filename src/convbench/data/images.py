"""Image operations shared by the parsers, the ingestion and the served model."""

from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """`image` [H, W, C] resized to (height, width) with OpenCV.

    Args:
        interpolation: An OpenCV flag; None uses `cv2.INTER_AREA` to shrink and `cv2.INTER_LINEAR`
            to enlarge.
    """
    height, width = size
    if interpolation is None:
        shrinking = height * width < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation).reshape(height, width, image.shape[-1])


def resize_images(images: np.ndarray, size: int | tuple[int, int], interpolation: int | None = None) -> np.ndarray:
    """A batch `images` [N, H, W, C] resized image by image with :func:`resize_image`.

    Args:
        size: Target (height, width), or one number for a square.
        interpolation: As for :func:`resize_image`.

    Returns:
        A new array [N, height, width, C] of the same dtype (a copy when the size is unchanged).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C). Received: shape={images.shape}")
    height, width = (size, size) if isinstance(size, int) else size
    if (height, width) == images.shape[1:3]:
        return images.copy()
    out = np.empty((images.shape[0], height, width, images.shape[3]), dtype=images.dtype)
    for index, image in enumerate(images):
        out[index] = resize_image(image, (height, width), interpolation)
    return out


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Grey images [N, H, W, 1] with the channel repeated three times; RGB [N, H, W, 3] returned as is."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (N, H, W, 1) or (N, H, W, 3). Received: shape={images.shape}")
    return images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
