"""Tests for the shared image operations: decoding with a header check first, batch resizing and grey-to-RGB."""

from __future__ import annotations

import functools
import io
import struct

import cv2
import numpy as np
import PIL.Image
import pytest
from test_serving import png_header_declaring

from convbench.data.images import declared_size, decode_image, resize_image, resize_images, to_rgb


def encoded(extension: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp"])
def test_the_header_size_of_real_files_is_read_without_decoding(extension):
    data = encoded(extension, np.zeros((13, 21, 3), dtype=np.uint8))
    assert declared_size(data) == (21, 13)
    assert declared_size(encoded(extension, np.zeros((13, 21), dtype=np.uint8))) == (21, 13)
    assert declared_size(b"GIF89a...") is None and declared_size(data[:10]) is None and declared_size(b"") is None


def pillow_encoded(image: np.ndarray, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format=format, **options)
    return buffer.getvalue()


def camera_exif(make: str) -> PIL.Image.Exif:
    """EXIF data naming the camera maker: an APP1 segment before the JPEG's size."""
    exif = PIL.Image.Exif()
    exif[0x010F] = make
    return exif


def palette_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).quantize(16).save(buffer, format="PNG")
    return buffer.getvalue()


def bmp_with_core_header(width: int, height: int) -> bytes:
    """An OS/2 bitmap (12-byte header, 16-bit sizes), which neither OpenCV nor Pillow writes."""
    row = bytes(-(-width * 3 // 4) * 4)
    header = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(row) * height, 0, 0, 26) + header + row * height


@functools.cache
def header_sample() -> dict[str, bytes]:
    """Files of every kind the header reader meets, each 37 x 19, from both OpenCV and Pillow."""
    rgb = np.random.default_rng(1).integers(0, 256, (19, 37, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    bottom_up = encoded(".bmp", rgb)
    top_down = bottom_up[:22] + struct.pack("<i", -19) + bottom_up[26:]
    return {
        "png rgb": encoded(".png", rgb),
        "png grey": encoded(".png", grey),
        "png rgba": encoded(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)),
        "png 16-bit": encoded(".png", rgb.astype(np.uint16) * 257),
        "png palette (pillow)": palette_png(rgb),
        "jpeg baseline": encoded(".jpg", rgb),
        "jpeg grey": encoded(".jpg", grey),
        "jpeg progressive": pillow_encoded(rgb, "JPEG", progressive=True),
        "jpeg with exif": pillow_encoded(rgb, "JPEG", exif=camera_exif("convbench")),
        "bmp bottom-up": bottom_up,
        "bmp top-down": top_down,
        "bmp grey (pillow)": pillow_encoded(grey, "BMP"),
        "bmp os/2": bmp_with_core_header(37, 19),
    }


@pytest.mark.parametrize("kind", list(header_sample()))
def test_the_header_reader_agrees_with_pillow_on_every_kind_of_file(kind):
    data = header_sample()[kind]
    with PIL.Image.open(io.BytesIO(data)) as image:
        assert image.size == (37, 19)
    assert declared_size(data) == (37, 19)


@pytest.mark.parametrize("kind", ["png rgb", "jpeg progressive", "jpeg with exif", "bmp top-down", "bmp os/2"])
def test_a_header_cut_short_anywhere_gives_no_size_rather_than_an_error_or_a_wrong_one(kind):
    data = header_sample()[kind]
    sizes = {declared_size(data[:length]) for length in range(len(data))}
    assert sizes <= {None, (37, 19)} and None in sizes


def test_a_damaged_jpeg_header_gives_no_size():
    jpeg = header_sample()["jpeg baseline"]
    assert declared_size(jpeg[:2] + b"\x00" + jpeg[3:]) is None  # no marker after the signature
    assert declared_size(jpeg[:4] + b"\x00\x01" + jpeg[6:]) is None  # a segment shorter than its length field


def test_files_are_decoded_to_rgb_or_grey_whatever_their_colour_type():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for extension in (".png", ".bmp"):
        np.testing.assert_array_equal(decode_image(encoded(extension, bgr), 3, "x", max_pixels=64), rgb)
    np.testing.assert_array_equal(decode_image(encoded(".png", bgr), 1, "x", max_pixels=64)[..., 0], grey)
    as_rgb = decode_image(encoded(".png", grey), 3, "x", max_pixels=64)
    assert all((as_rgb[..., channel] == grey).all() for channel in range(3))
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(decode_image(encoded(".png", rgba), 3, "x", max_pixels=64), rgb)
    sixteen_bit = bgr.astype(np.uint16) * 257
    np.testing.assert_array_equal(decode_image(encoded(".png", sixteen_bit), 3, "x", max_pixels=64), rgb)
    assert decode_image(encoded(".jpg", bgr), 3, "x", max_pixels=64).shape == (8, 8, 3)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(monkeypatch):
    def must_not_decode(*args):
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(
        ValueError,
        match=r"^bomb.png: the file declares 20,000 x 20,000 pixels; at most 100,000,000 pixels are decoded",
    ):
        decode_image(png_header_declaring(20_000, 20_000), 3, "bomb.png", max_pixels=100_000_000)
    with pytest.raises(ValueError, match=r"^small.png: the file declares 9 x 8 pixels; at most 64 pixels"):
        decode_image(encoded(".png", np.zeros((8, 9, 3), np.uint8)), 3, "small.png", max_pixels=64)


def test_files_that_are_no_png_jpeg_or_bmp_or_cut_short_are_refused_naming_the_file():
    png = encoded(".png", np.zeros((8, 8, 3), np.uint8))
    for data, size in ((b"hello", 5), (b"GIF89a" + bytes(20), 26), (png[:40], 40), (b"", 0)):
        with pytest.raises(ValueError, match=rf"^a.png: could not decode {size} bytes as a PNG, JPEG or BMP image$"):
            decode_image(data, 3, "a.png", max_pixels=64)


def test_resize_to_64_keeps_dtype_channels_and_constant_images():
    images = np.full((3, 48, 48, 1), 77, dtype=np.uint8)
    images[1] = 200
    resized = resize_images(images, 64)
    assert resized.shape == (3, 64, 64, 1) and resized.dtype == np.uint8
    assert set(np.unique(resized[0])) == {77} and set(np.unique(resized[1])) == {200}


def test_resize_down_averages_blocks_and_handles_rgb():
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[:, :2, :2] = 100  # top-left 2x2 block
    resized = resize_images(images, (2, 2))
    assert resized.shape == (2, 2, 2, 3)
    assert resized[0, 0, 0].tolist() == [100, 100, 100]
    assert resized[0, 1, 1].tolist() == [0, 0, 0]
    same = resize_images(images, 4)
    np.testing.assert_array_equal(same, images)
    assert same is not images
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, C\)"):
        resize_images(images[0], 2)


def test_a_batch_is_resized_exactly_as_each_image_alone():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 48, 48, 1), dtype=np.uint8)
    for size in ((64, 64), (32, 40)):
        resized = resize_images(images, size)
        for image, alone in zip(images, resized):
            np.testing.assert_array_equal(alone, resize_image(image, size))


def test_to_rgb_repeats_the_grey_channel():
    images = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48, 1)
    rgb = to_rgb(images)
    assert rgb.shape == (2, 48, 48, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], images[..., 0])
    assert to_rgb(rgb) is rgb
    with pytest.raises(ValueError, match="images must have shape"):
        to_rgb(np.zeros((2, 48, 48, 2), np.uint8))
