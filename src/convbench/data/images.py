"""Image operations shared by the parsers and the served model."""

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
