"""Image operations shared by the parsers, the ingestion and the served model: decoding image files
(with a size check read from the header first), resizing, grey to RGB."""

from __future__ import annotations

import struct

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
BMP_SIGNATURE = b"BM"
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""JPEG start-of-frame markers (baseline, progressive, lossless...): the segments that hold the image size."""
BMP_CORE_HEADER_SIZE = 12
"""The OS/2 bitmap header, whose width and height are 16-bit; every later header has 32-bit ones."""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP file's header, without decoding it; None if `data`
    is none of these formats or its header is damaged or cut short.

    Read by hand from the formats' fixed fields rather than by Pillow's header readers, which agree
    (a test checks) but made small-image decoding 1.9x as slow (benchmarks/README.md)."""
    try:
        if data.startswith(PNG_SIGNATURE):
            return _png_size(data)
        if data.startswith(JPEG_SIGNATURE):
            return _jpeg_size(data)
        if data.startswith(BMP_SIGNATURE):
            return _bmp_size(data)
    except struct.error:
        return None
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == BMP_CORE_HEADER_SIZE:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's first start-of-frame segment; struct.error if none is complete."""
    offset = len(JPEG_SIGNATURE)
    while True:
        while data[offset : offset + 2] == b"\xff\xff":
            offset += 1  # fill bytes before a marker
        if data[offset : offset + 1] != b"\xff":
            raise struct.error(f"no JPEG marker at byte {offset}")
        marker, length = struct.unpack(">xBH", data[offset : offset + 4])
        if marker in JPEG_SOF_MARKERS:
            height, width = struct.unpack(">xHH", data[offset + 4 : offset + 9])
            return width, height
        if length < 2:
            raise struct.error(f"JPEG segment {marker:#04x} declares {length} bytes")
        offset += 2 + length


def decode_image(data: bytes, channels: int, name: str, *, max_pixels: int) -> np.ndarray:
    """A PNG/JPEG/BMP file's pixels as uint8 [H, W, channels] (RGB or grey), whatever its own colour type.

    The header is read first: a file that is not PNG, JPEG or BMP, or that declares more than
    `max_pixels` pixels (a decompression bomb), is refused before any pixel is decoded. The
    pixels are decoded by OpenCV.

    Raises:
        ValueError: `data` is not a PNG/JPEG/BMP file, declares too many pixels, or cannot be
            decoded; the message starts with `name`.
    """
    size = declared_size(data)
    if size is None:
        raise ValueError(f"{name}: could not decode {len(data):,} bytes as a PNG, JPEG or BMP image")
    width, height = size
    if width * height > max_pixels:
        raise ValueError(
            f"{name}: the file declares {width:,} x {height:,} pixels; at most {max_pixels:,} "
            "pixels are decoded (a smaller image, or resize it before sending)"
        )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError(f"{name}: could not decode {len(data):,} bytes as a PNG, JPEG or BMP image")
    if decoded.dtype != np.uint8:
        decoded = (decoded / 257).round().astype(np.uint8)  # 16-bit PNG
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    if decoded.shape[-1] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        return decoded if decoded.shape[-1] == 1 else cv2.cvtColor(decoded, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB if decoded.shape[-1] == 1 else cv2.COLOR_BGR2RGB)


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
