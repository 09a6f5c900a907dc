"""Tests for the MNIST idx parser, on files in the exact official format."""

from __future__ import annotations

import struct

import mnist_files as mf
import numpy as np
import pytest
from parsed_arrays import assert_same

from convbench.data.archives import ArchiveFormatError
from convbench.data.mnist import (
    CLASS_NAMES,
    EXPECTED_COUNTS,
    FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    describe_magic,
    mnist_paths,
    read_idx,
    read_mnist,
)

KEYS = {"train_images", "train_labels", "test_images", "test_labels", "class_names"}
SMALL = {"train": 20, "test": 10}


def _replace(key: str, transform):
    """A `mutate` hook that replaces one file's contents by ``transform(contents)``."""
    return lambda contents: {**contents, key: transform(contents[key])}


# --- format facts -------------------------------------------------------------------------------


def test_format_facts_match_the_official_files():
    assert FILES == mf.FILES
    assert (IMAGES_MAGIC, LABELS_MAGIC) == (2051, 2049)
    assert EXPECTED_COUNTS == {"train": 60_000, "test": 10_000}
    assert list(CLASS_NAMES) == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert describe_magic(IMAGES_MAGIC) == "0x00000803 (uint8, 3 dimensions)"
    assert describe_magic(LABELS_MAGIC) == "0x00000801 (uint8, 1 dimension)"


def test_mnist_paths_uses_the_official_names(tmp_path):
    paths = mnist_paths(tmp_path)
    assert paths["train_images"] == tmp_path / "train-images-idx3-ubyte.gz"
    assert paths["test_labels"] == tmp_path / "t10k-labels-idx1-ubyte.gz"
    assert set(paths) == set(FILES)


# --- exact round trips ------------------------------------------------------------------------


def test_gzipped_files_roundtrip_exactly(tmp_path):
    paths, expected = mf.make_mnist_files(tmp_path, train=20, test=10)
    result = read_mnist(paths, SMALL)
    assert_same(result, expected, KEYS)
    assert result["train_images"].shape == (20, 28, 28, 1)
    assert result["test_labels"].shape == (10,)
    assert result["train_labels"].dtype == np.int64


def test_pixels_are_row_major_and_the_highest_label_is_kept(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path)
    result = read_mnist(paths, SMALL)
    first = result["train_images"][0, :, :, 0]
    assert first[3, 5] == 255 and first.sum() == 255  # row 3, column 5; not transposed
    assert result["train_labels"][0] == 9


def test_uncompressed_files_are_read_too(tmp_path):
    # Detected from the first bytes, not the name: a browser that gunzipped the download is fine.
    paths, expected = mf.make_mnist_files(tmp_path, compress=False)
    assert not paths["train_images"].read_bytes().startswith(b"\x1f\x8b")
    assert_same(read_mnist(paths, SMALL), expected, KEYS)


def test_arrays_are_writable_and_contiguous(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path)
    result = read_mnist(paths, SMALL)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert result[key].flags.writeable and result[key].flags.c_contiguous, key


def test_empty_splits_are_valid_idx_files(tmp_path):
    paths, expected = mf.make_mnist_files(tmp_path, train=0, test=0)
    result = read_mnist(paths, {"train": 0, "test": 0})
    assert result["train_images"].shape == (0, 28, 28, 1)
    assert_same(result, expected, KEYS)


def test_default_expected_counts_are_the_official_ones(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, train=20, test=10)
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths)
    assert str(paths["train_images"]) in str(info.value)
    assert "expected 60,000 train images, found 20" in str(info.value)


def test_expected_counts_none_skips_the_check(tmp_path):
    paths, expected = mf.make_mnist_files(tmp_path, train=3, test=2)
    assert_same(read_mnist(paths, None), expected, KEYS)


def test_test_count_mismatch(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, train=20, test=10)
    with pytest.raises(ArchiveFormatError, match=r"t10k-images-idx3-ubyte\.gz: expected 10,000 test images, found 10"):
        read_mnist(paths, {"train": 20, "test": 10_000})


# --- read_idx on other idx types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_code", "dtype"),
    [(0x08, np.uint8), (0x09, np.int8), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")],
)
def test_read_idx_decodes_every_idx_type_big_endian(tmp_path, type_code, dtype):
    values = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    path = tmp_path / "values.idx"
    path.write_bytes(mf.encode_idx(values, (type_code << 8) | 3))
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype).newbyteorder("=")
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, values)


def test_read_idx_of_a_gzipped_file(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    path = tmp_path / "labels.gz"
    path.write_bytes(mf.gzip_bytes(mf.encode_idx(labels, LABELS_MAGIC)))
    np.testing.assert_array_equal(read_idx(path, LABELS_MAGIC), labels)


def test_unknown_type_code_is_refused(tmp_path):
    path = tmp_path / "values.idx"
    path.write_bytes(struct.pack(">II", 0x00000A01, 1) + b"\0")
    with pytest.raises(ArchiveFormatError, match=r"expected an idx magic number .* found 0x00000A01 \(not an idx"):
        read_idx(path)


# --- malformed files ------------------------------------------------------------------------------


def test_truncated_images_file_gives_expected_and_found_sizes(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, train=20, mutate=_replace("train_images", lambda data: data[:-10]))
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, SMALL)
    message = str(info.value)
    assert message.startswith(f"{paths['train_images']}: ")
    assert "expected 15,680 bytes of data after the 16-byte header (20 x 28 x 28 values" in message
    assert "found 15,670: the file is truncated" in message


def test_too_long_labels_file_is_refused(tmp_path):
    longer = _replace("test_labels", lambda data: data + b"\x01\x02\x03")
    paths, _ = mf.make_mnist_files(tmp_path, test=10, mutate=longer)
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, SMALL)
    assert str(paths["test_labels"]) in str(info.value)
    assert "expected 10 bytes of data after the 8-byte header (10 values of 1 byte(s)" in str(info.value)
    assert "found 13: 3 bytes too many" in str(info.value)


def test_header_cut_short(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, mutate=_replace("train_images", lambda data: data[:10]))
    with pytest.raises(ArchiveFormatError, match=r"expected a 16-byte header \(magic number and 3 sizes\), found 10"):
        read_mnist(paths, SMALL)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"], ids=["empty", "two-bytes"])
def test_file_too_short_for_a_magic_number(tmp_path, content):
    paths, _ = mf.make_mnist_files(tmp_path, mutate=_replace("test_images", lambda data: content))
    with pytest.raises(ArchiveFormatError, match=f"starting with a 4-byte magic number, found {len(content)} byte"):
        read_mnist(paths, SMALL)


def test_images_and_labels_files_swapped(tmp_path):
    def swap(contents):
        return {**contents, "train_images": contents["train_labels"], "train_labels": contents["train_images"]}

    paths, _ = mf.make_mnist_files(tmp_path, mutate=swap)
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, SMALL)
    message = str(info.value)
    assert str(paths["train_images"]) in message
    assert "expected magic number 0x00000803 (uint8, 3 dimensions), found 0x00000801 (uint8, 1 dimension)" in message


def test_html_error_page_instead_of_an_idx_file(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, mutate=_replace("train_labels", lambda _: b"<html>403 Forbidden</html>"))
    with pytest.raises(ArchiveFormatError, match=r"found 0x3C68746D \(not an idx magic number\)"):
        read_mnist(paths, SMALL)


def test_images_of_another_size_are_refused(tmp_path):
    big = mf.encode_idx(np.zeros((20, 32, 32), np.uint8), IMAGES_MAGIC)
    paths, _ = mf.make_mnist_files(tmp_path, mutate=_replace("train_images", lambda _: big))
    with pytest.raises(ArchiveFormatError, match=r"train-images-idx3-ubyte\.gz: expected 28x28 images, found 32x32"):
        read_mnist(paths, SMALL)


def test_label_out_of_range_names_the_index_and_the_value(tmp_path):
    def bad_labels(data: bytes) -> bytes:
        labels = bytearray(data)
        labels[8 + 4] = 10  # after the 8-byte header
        labels[8 + 7] = 255
        return bytes(labels)

    paths, _ = mf.make_mnist_files(tmp_path, mutate=_replace("train_labels", bad_labels))
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, SMALL)
    message = str(info.value)
    assert str(paths["train_labels"]) in message
    assert "label 4 (0-based) is 10, expected 0-9 (2 of 20 labels are out of range)" in message


def test_image_and_label_counts_differ(tmp_path):
    fewer = mf.encode_idx(np.zeros(9, np.uint8), LABELS_MAGIC)
    paths, _ = mf.make_mnist_files(tmp_path, test=10, mutate=_replace("test_labels", lambda _: fewer))
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, SMALL)
    message = str(info.value)
    assert message.startswith(f"{paths['test_labels']}: ")
    assert f"expected as many labels as {paths['test_images']} has images (10), found 9" in message


@pytest.mark.parametrize("fraction", [0.3, 0.99])
def test_truncated_gzip_file(tmp_path, fraction):
    paths, _ = mf.make_mnist_files(tmp_path, train=50)
    data = paths["train_images"].read_bytes()
    paths["train_images"].write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ArchiveFormatError) as info:
        read_mnist(paths, None)
    assert str(paths["train_images"]) in str(info.value)
    assert "expected a complete gzip stream, found a truncated or corrupt one" in str(info.value)


def test_corrupt_gzip_file(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path, train=50)
    data = bytearray(paths["train_images"].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 32] = b"\xff" * 32
    paths["train_images"].write_bytes(bytes(data))
    with pytest.raises(ArchiveFormatError, match="expected a complete gzip stream") as info:
        read_mnist(paths, None)
    assert str(paths["train_images"]) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path)
    paths["test_images"].unlink()
    with pytest.raises(FileNotFoundError):
        read_mnist(paths, SMALL)


def test_paths_with_missing_keys_is_a_usage_error(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path)
    del paths["test_labels"]
    with pytest.raises(ValueError, match=r"paths must have exactly the keys .*Received: \['test_images', 'train_"):
        read_mnist(paths, SMALL)


def test_expected_counts_with_an_unknown_split_is_a_usage_error(tmp_path):
    paths, _ = mf.make_mnist_files(tmp_path)
    with pytest.raises(ValueError, match=r"keys must be 'train' and/or 'test'. Received: \{'valid': 5\}"):
        read_mnist(paths, {"valid": 5})
