"""Property-based fuzzing of every parser: damaged inputs give a correct parse or the documented error.

Each parser gets a valid file in its official format, damaged by hypothesis: truncations, bit flips,
inserted bytes and (for idx) huge declared sizes. Allowed outcomes: a parse with the documented
shapes and dtypes, or the documented error type (never another exception). Every example has a
deadline (no hang), and where the format declares sizes, memory stays bounded by the input's size
(tracemalloc sees NumPy's buffers).
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
from pathlib import Path

import cifar_archives
import cv2
import fer_files
import mnist_files
import numpy as np
import pytest
import tiny_imagenet_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convbench.data.archives import ArchiveFormatError
from convbench.data.cifar import CIFAR10, parse_records, read_cifar_archive
from convbench.data.fer2013 import parse_fer2013_csv
from convbench.data.ferplus import parse_ferplus_csv
from convbench.data.images import decode_image
from convbench.data.mnist import IMAGES_MAGIC, read_idx
from convbench.data.tiny_imagenet import read_tiny_imagenet

FUZZ = settings(
    max_examples=200,
    deadline=3000,  # ms per example: a parser that hangs fails here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples in every run: CI cannot flake on a new draw
)


@st.composite
def damaged(draw, original: bytes, protect: int = 0) -> bytes:
    """`original` after 1-3 truncations, bit flips or insertions (the first `protect` bytes kept)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
        at = draw(st.integers(min(protect, len(data)), max(len(data) - 1, protect)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def peak_bytes(function, *args, **kwargs):
    """(result or raised error, peak bytes allocated while `function` ran)."""
    tracemalloc.start()
    try:
        return attempt(function, *args, **kwargs), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def written(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


def attempt(function, *args, **kwargs):
    """`function`'s result, or the exception it raised."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # checked by the caller
        return error


# ---- MNIST idx ---------------------------------------------------------------------------------
IDX = mnist_files.encode_idx(np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8), IMAGES_MAGIC)


@FUZZ
@given(data=damaged(IDX), gzipped=st.booleans())
def test_idx_files_parse_or_raise_archive_format_error_within_a_memory_bound(data, gzipped):
    raw = mnist_files.gzip_bytes(data) if gzipped else data
    path = written(raw, ".gz" if gzipped else "")
    outcome, peak = peak_bytes(read_idx, path)
    path.unlink()
    if isinstance(outcome, Exception):
        assert isinstance(outcome, ArchiveFormatError), repr(outcome)
        assert str(path) in str(outcome)
    else:
        assert outcome.nbytes + 16 <= len(data) + 4 * 8  # what was parsed was in the file
    assert peak < 4 * len(data) + 1_000_000


@FUZZ
@given(dims=st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=4), payload=st.binary(max_size=256))
def test_an_idx_header_declaring_huge_sizes_allocates_nothing_of_that_size(dims, payload):
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    path = written(header + payload, "")
    outcome, peak = peak_bytes(read_idx, path)
    path.unlink()
    if isinstance(outcome, Exception):
        assert isinstance(outcome, ArchiveFormatError), repr(outcome)
    else:
        assert outcome.size == int(np.prod(dims)) == len(payload)
    assert peak < 1_000_000, f"declared {np.prod(dims, dtype=float):.3g} items, allocated {peak} bytes"


# ---- CIFAR binary records and the tar.gz ---------------------------------------------------------
RECORDS = cifar_archives.encode_records(
    cifar_archives.images_for(12, np.random.default_rng(1)), np.arange(12, dtype=np.uint8) % 10
)


@FUZZ
@given(data=damaged(RECORDS))
def test_cifar_records_parse_or_raise_archive_format_error(data):
    outcome, peak = peak_bytes(parse_records, data, CIFAR10, source="data_batch_1.bin")
    if isinstance(outcome, Exception):
        assert isinstance(outcome, ArchiveFormatError) and "data_batch_1.bin" in str(outcome), repr(outcome)
    else:
        images, labels = outcome
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert len(images) * 3073 == len(data) and all(len(v) == len(images) for v in labels.values())
        assert all(int(v.max(initial=0)) < 10 for v in labels.values())
    assert peak < 4 * len(data) + 1_000_000


@pytest.fixture(scope="module")
def cifar_archive_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-binary.tar.gz"
    cifar_archives.make_cifar10_archive(path, per_batch=4, test=4)
    return path.read_bytes()


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_cifar_archives_parse_or_raise_archive_format_error(cifar_archive_bytes, data):
    damaged_archive = data.draw(damaged(cifar_archive_bytes, protect=10))
    path = written(damaged_archive, ".tar.gz")
    result = attempt(read_cifar_archive, path, CIFAR10)
    path.unlink()
    if isinstance(result, Exception):
        assert isinstance(result, ArchiveFormatError) and str(path) in str(result), repr(result)
    else:
        assert result["train_images"].shape[1:] == (32, 32, 3) and len(result["class_names"]) == 10


# ---- FER2013 and FERPlus CSV -------------------------------------------------------------------------
FER_CSV = fer_files.fer2013_text(fer_files.fer2013_rows({"Training": 3, "PublicTest": 2, "PrivateTest": 2}))
FERPLUS_CSV = fer_files.ferplus_slice(["Training", "PublicTest", "PrivateTest"])


@FUZZ
@given(data=damaged(FER_CSV))
def test_fer2013_csv_parses_or_raises_fer_format_error(data):
    table = attempt(parse_fer2013_csv, data, source="fer2013.csv", workers=1)
    if isinstance(table, Exception):
        assert isinstance(table, ArchiveFormatError) and "fer2013.csv" in str(table), repr(table)
    else:
        assert table.images.dtype == np.uint8 and table.images.shape[1:3] == (48, 48)
        assert len(table.emotions) == len(table.images) and int(table.emotions.max(initial=0)) < 7


@FUZZ
@given(data=damaged(FERPLUS_CSV))
def test_ferplus_csv_parses_or_raises_fer_format_error(data):
    votes = attempt(parse_ferplus_csv, data, source="fer2013new.csv")
    if isinstance(votes, Exception):
        assert isinstance(votes, ArchiveFormatError) and "fer2013new.csv" in str(votes), repr(votes)
    else:
        assert votes.votes.shape[1] == 10 and (votes.votes >= 0).all()


# ---- Tiny ImageNet zip ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_zip_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200.zip"
    tiny_imagenet_files.make_tiny_imagenet_zip(path, per_class=2, val=3, image_size=16)
    return path.read_bytes()


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_tiny_imagenet_zips_parse_or_raise_archive_format_error(tiny_zip_bytes, data):
    path = written(data.draw(damaged(tiny_zip_bytes)), ".zip")
    counts = {"expected_classes": 3, "expected_per_class": 2, "expected_val": 3}
    result = attempt(read_tiny_imagenet, path, 16, **counts, progressbar=False)
    path.unlink()
    if isinstance(result, Exception):
        assert isinstance(result, ArchiveFormatError) and str(path) in str(result), repr(result)
    else:
        assert result["train_images"].shape == (6, 16, 16, 3) and result["test_images"].shape == (3, 16, 16, 3)


# ---- The image decoder (image folders, served models) -------------------------------------------------
MAX_PIXELS = 4096 * 4096


def encoded(extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert ok
    return buffer.tobytes()


@FUZZ
@given(data=st.sampled_from([".png", ".jpg", ".bmp"]).flatmap(lambda ext: damaged(encoded(ext))))
def test_the_image_decoder_decodes_or_raises_a_value_error_naming_the_image_within_a_memory_bound(data):
    outcome, peak = peak_bytes(decode_image, data, 3, "image 0", max_pixels=MAX_PIXELS)
    if isinstance(outcome, Exception):
        assert type(outcome) is ValueError and str(outcome).startswith("image 0: "), repr(outcome)
    else:
        assert outcome.dtype == np.uint8 and outcome.ndim == 3 and outcome.shape[2] == 3
        assert outcome.shape[0] * outcome.shape[1] <= MAX_PIXELS
    assert peak < 50 * len(data) + 10_000_000
