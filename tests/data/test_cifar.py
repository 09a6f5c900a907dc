"""Tests for the CIFAR binary parsers and the shared archive readers, on the exact official layout."""

from __future__ import annotations

import bz2
import dataclasses
import functools
import lzma
import re
import tarfile
from pathlib import Path

import cifar_archives as ca
import numpy as np
import pytest
from parsed_arrays import assert_same

from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError, read_tar_members
from convbench.data.cifar import CIFAR10, CIFAR100, FORMATS, parse_records, read_cifar_archive

CIFAR10_KEYS = {"train_images", "train_labels", "test_images", "test_labels", "class_names"}
CIFAR100_KEYS = CIFAR10_KEYS | {"train_coarse_labels", "test_coarse_labels", "coarse_class_names"}


# --- format facts -------------------------------------------------------------------------


def test_format_facts_match_the_official_layout():
    assert FORMATS == {"cifar10": CIFAR10, "cifar100": CIFAR100}
    assert CIFAR10.member_dir == "cifar-10-batches-bin"
    assert CIFAR10.train_members == tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    assert CIFAR10.test_members == ("test_batch.bin",)
    assert CIFAR10.label_fields == (("label", 10, "batches.meta.txt"),)
    assert CIFAR10.record_bytes == 3073
    assert CIFAR100.member_dir == "cifar-100-binary"
    assert (CIFAR100.train_members, CIFAR100.test_members) == (("train.bin",), ("test.bin",))
    assert CIFAR100.label_fields == (("coarse", 20, "coarse_label_names.txt"), ("fine", 100, "fine_label_names.txt"))
    assert CIFAR100.record_bytes == 3074
    with pytest.raises(dataclasses.FrozenInstanceError):
        CIFAR10.record_bytes = 3072  # type: ignore[misc]


def test_fixture_names_are_the_official_class_lists():
    assert len(ca.CIFAR100_FINE_CLASSES) == len(set(ca.CIFAR100_FINE_CLASSES)) == 100
    assert len(ca.CIFAR100_COARSE_CLASSES) == len(set(ca.CIFAR100_COARSE_CLASSES)) == 20
    assert list(ca.CIFAR100_FINE_CLASSES) == sorted(ca.CIFAR100_FINE_CLASSES)  # official order is alphabetical


# --- exact round trips ------------------------------------------------------------------------


def test_cifar10_archive_roundtrip_is_exact(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    expected = ca.make_cifar10_archive(archive, per_batch=20, test=15)
    result = read_cifar_archive(archive, CIFAR10, {"train": 100, "test": 15})
    assert set(result) == CIFAR10_KEYS
    assert_same(result, expected)
    assert result["train_images"].shape == (100, 32, 32, 3)
    assert result["train_images"].dtype == np.uint8
    assert result["train_images"].flags["C_CONTIGUOUS"]
    assert result["train_labels"].dtype == np.int64


def test_cifar10_train_batches_are_concatenated_in_numeric_order(tmp_path):
    # The fixture archive stores data_batch_1, 3, 4, 5, 2 in that order.
    archive = tmp_path / "cifar-10-binary.tar.gz"
    expected = ca.make_cifar10_archive(archive, per_batch=4, test=2)
    with tarfile.open(archive) as tar:
        stored = [Path(name).name for name in tar.getnames() if "data_batch" in name]
    assert stored != sorted(stored)
    result = read_cifar_archive(archive, CIFAR10)
    np.testing.assert_array_equal(result["train_images"][4:8], expected["train_images"][4:8])  # data_batch_2


def test_cifar10_known_pixel_is_rgb_in_hwc_layout(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=3, test=2)
    result = read_cifar_archive(archive, CIFAR10)
    row, col = ca.KNOWN_PIXEL
    assert tuple(result["train_images"][0, row, col]) == ca.KNOWN_RGB
    assert result["train_labels"][0] == 9
    # The same pixel found by its byte offsets in the raw record: label, then R, G, B planes.
    raw = read_tar_members(archive, ["cifar-10-batches-bin/data_batch_1.bin"])["cifar-10-batches-bin/data_batch_1.bin"]
    offset = row * 32 + col
    assert (raw[0], raw[1 + offset], raw[1 + 1024 + offset], raw[1 + 2048 + offset]) == (9, *ca.KNOWN_RGB)


def test_parse_records_decodes_a_hand_built_cifar10_record():
    record = bytearray(3073)
    record[0] = 3  # cat
    row, col = 2, 30
    record[1 + row * 32 + col] = 11  # red plane
    record[1 + 1024 + row * 32 + col] = 22  # green plane
    record[1 + 2048 + row * 32 + col] = 33  # blue plane
    record[1 + 2048 + 1023] = 44  # blue, bottom-right pixel
    images, labels = parse_records(bytes(record), CIFAR10, source="hand.bin")
    assert images.shape == (1, 32, 32, 3)
    assert images[0, row, col].tolist() == [11, 22, 33]
    assert images[0, 31, 31].tolist() == [0, 0, 44]
    assert int(images.sum()) == 11 + 22 + 33 + 44
    assert labels["label"].tolist() == [3]
    assert labels["label"].dtype == np.int64


def test_parse_records_decodes_a_hand_built_cifar100_record_coarse_byte_first():
    record = bytearray(3074)
    record[0], record[1] = 19, 99  # coarse, fine
    record[2 + 0] = 200  # red, top-left
    record[2 + 1024 + 32] = 100  # green, row 1 col 0
    images, labels = parse_records(bytes(record), CIFAR100, source="hand.bin")
    assert images[0, 0, 0].tolist() == [200, 0, 0]
    assert images[0, 1, 0].tolist() == [0, 100, 0]
    assert labels["coarse"].tolist() == [19]
    assert labels["fine"].tolist() == [99]


def test_parse_records_of_an_empty_file_returns_empty_arrays():
    images, labels = parse_records(b"", CIFAR10, source="empty.bin")
    assert images.shape == (0, 32, 32, 3)
    assert labels["label"].shape == (0,)


def test_cifar100_archive_roundtrip_is_exact_fine_and_coarse(tmp_path):
    archive = tmp_path / "cifar-100-binary.tar.gz"
    expected = ca.make_cifar100_archive(archive, train=30, test=20)
    result = read_cifar_archive(archive, CIFAR100, {"train": 30, "test": 20})
    assert set(result) == CIFAR100_KEYS
    assert_same(result, expected)
    assert result["train_labels"][0] == 99  # fine
    assert result["train_coarse_labels"][0] == 19
    assert result["class_names"][99] == "worm"
    assert result["coarse_class_names"][19] == "vehicles_2"
    row, col = ca.KNOWN_PIXEL
    assert tuple(result["train_images"][0, row, col]) == ca.KNOWN_RGB


def test_class_names_are_stripped_and_blank_lines_skipped(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"

    def spaced_names(members):
        text = "\n\n".join(f"  {name}\t" for name in ca.CIFAR10_CLASSES) + "\r\n\n\n"
        return {**members, "batches.meta.txt": text.encode()}

    ca.make_cifar10_archive(archive, per_batch=1, test=1, mutate=spaced_names)
    assert read_cifar_archive(archive, CIFAR10)["class_names"] == list(ca.CIFAR10_CLASSES)


def test_members_with_a_leading_dot_slash_and_plain_tar_are_read(tmp_path):
    archive = ca.write_tar(
        tmp_path / "plain.tar",
        [ca.folder("."), ca.member("./data/a.bin", b"abc"), ca.member("data/b.txt", b"")],
        gzip=False,
    )
    assert read_tar_members(archive, ["data/a.bin", "data/b.txt"]) == {"data/a.bin": b"abc", "data/b.txt": b""}


COMPRESSORS = {
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "lzma": functools.partial(lzma.compress, format=lzma.FORMAT_ALONE),  # the legacy .lzma format
}


def _compressed_tar(path: Path, kind: str) -> Path:
    """Write a small tar archive compressed with `kind` (a key of COMPRESSORS)."""
    noise = np.random.default_rng(3).integers(0, 256, 20_000, np.uint8).tobytes()
    plain = ca.write_tar(
        path.with_suffix(".plain"), [ca.member("d/a.bin", noise), ca.member("d/b.txt", b"x")], gzip=False
    )
    path.write_bytes(COMPRESSORS[kind](plain.read_bytes()))
    return path


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_bz2_and_xz_archives_are_read(tmp_path, kind):
    archive = _compressed_tar(tmp_path / f"a.tar.{kind}", kind)
    result = read_tar_members(archive, ["d/a.bin", "d/b.txt"])
    assert len(result["d/a.bin"]) == 20_000 and result["d/b.txt"] == b"x"


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_bz2_and_xz_archives_cut_short_are_refused(tmp_path, kind):
    archive = _compressed_tar(tmp_path / f"a.tar.{kind}", kind)
    archive.write_bytes(archive.read_bytes()[:-1])
    with pytest.raises(ArchiveFormatError, match="compressed stream, found it cut short"):
        read_tar_members(archive, ["d/a.bin"])


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_corrupt_bz2_and_xz_data_is_refused(tmp_path, kind):
    archive = _compressed_tar(tmp_path / f"a.tar.{kind}", kind)
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveFormatError, match=r"invalid compressed data") as info:
        read_tar_members(archive, ["d/a.bin"])
    assert str(archive) in str(info.value)


def test_fixture_hash_helper_matches_pooch(tmp_path):
    pooch = pytest.importorskip("pooch")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=1, test=1)
    assert ca.file_hash(archive) == pooch.file_hash(str(archive), alg="md5")
    assert ca.known_hash(archive) == f"md5:{ca.file_hash(archive)}"
    # Reproducible bytes: the same arguments give the same file.
    again = tmp_path / "again.tar.gz"
    ca.make_cifar10_archive(again, per_batch=1, test=1)
    assert ca.file_hash(again) == ca.file_hash(archive)


# --- malformed data files -----------------------------------------------------------------------


def test_truncated_member_reports_member_size_and_incomplete_record(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(
        archive, per_batch=20, mutate=lambda m: {**m, "data_batch_2.bin": m["data_batch_2.bin"][:-100]}
    )
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    message = str(info.value)
    assert str(archive) in message
    assert "cifar-10-batches-bin/data_batch_2.bin" in message
    assert f"{20 * 3073 - 100:,} bytes" in message
    assert "3,073-byte" in message
    assert "record 19" in message


def test_record_size_not_a_multiple_of_3073_is_refused():
    buffer = bytes(2 * 3073 + 5)
    with pytest.raises(ArchiveFormatError) as info:
        parse_records(buffer, CIFAR10, source="some/test_batch.bin")
    message = str(info.value)
    assert message.startswith("some/test_batch.bin: ")
    assert "6,151 bytes" in message and "3,073-byte" in message and "record 2 " in message


def test_cifar100_file_with_cifar10_sized_records_is_refused(tmp_path):
    # 3,073-byte records (one label byte) where CIFAR-100 has 3,074.
    archive = tmp_path / "cifar-100-binary.tar.gz"
    ca.make_cifar100_archive(archive, mutate=lambda m: {**m, "test.bin": bytes(10 * 3073)})
    with pytest.raises(ArchiveFormatError, match=r"test\.bin.*3,074-byte.*30,730 bytes"):
        read_cifar_archive(archive, CIFAR100)


def test_cifar10_label_out_of_range_reports_record_field_and_range(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"

    def bad_label(members):
        data = bytearray(members["data_batch_3.bin"])
        data[7 * 3073] = 10
        data[9 * 3073] = 200
        return {**members, "data_batch_3.bin": bytes(data)}

    ca.make_cifar10_archive(archive, per_batch=20, mutate=bad_label)
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    message = str(info.value)
    assert str(archive) in message and "data_batch_3.bin" in message
    assert "record 7 (0-based): 'label' byte is 10, expected 0-9" in message
    assert "2 of 20 records" in message


@pytest.mark.parametrize(("column", "value", "field", "allowed"), [(1, 100, "fine", "0-99"), (0, 20, "coarse", "0-19")])
def test_cifar100_label_out_of_range_reports_record_field_and_range(tmp_path, column, value, field, allowed):
    archive = tmp_path / "cifar-100-binary.tar.gz"

    def bad_label(members):
        data = bytearray(members["train.bin"])
        data[4 * 3074 + column] = value
        return {**members, "train.bin": bytes(data)}

    ca.make_cifar100_archive(archive, mutate=bad_label)
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR100)
    message = str(info.value)
    assert "cifar-100-binary/train.bin" in message
    assert f"record 4 (0-based): {field!r} byte is {value}, expected {allowed}" in message


# --- malformed archives ---------------------------------------------------------------------------


def test_missing_member_is_named(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, mutate=lambda m: {k: v for k, v in m.items() if k != "data_batch_3.bin"})
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    message = str(info.value)
    assert str(archive) in message
    assert "cifar-10-batches-bin/data_batch_3.bin" in message and "missing" in message
    assert "cifar-10-batches-bin/data_batch_2.bin" in message  # what was found is listed too


def test_missing_names_member_is_named(tmp_path):
    archive = tmp_path / "cifar-100-binary.tar.gz"
    ca.make_cifar100_archive(archive, mutate=lambda m: {k: v for k, v in m.items() if k != "coarse_label_names.txt"})
    with pytest.raises(ArchiveFormatError, match=r"coarse_label_names\.txt.*missing"):
        read_cifar_archive(archive, CIFAR100)


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_archive_truncated_mid_stream(tmp_path, fraction):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=20)
    ca.truncate(archive, fraction)
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    message = str(info.value)
    assert str(archive) in message
    assert "truncated" in message


def test_archive_truncated_inside_a_member_names_the_member(tmp_path):
    archive = ca.write_tar(tmp_path / "a.tar", [ca.member("d/big.bin", bytes(range(256)) * 100)], gzip=False)
    ca.truncate(archive, 0.5)
    with pytest.raises(ArchiveFormatError) as info:
        read_tar_members(archive, ["d/big.bin"])
    assert "member 'd/big.bin'" in str(info.value) and "truncated" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"<html><body>404 Not Found</body></html>\n", b"", bytes(range(256)) * 8],
    ids=["html", "empty", "binary"],
)
def test_file_that_is_not_a_tar_at_all(tmp_path, content):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    assert str(archive) in str(info.value) and "expected a complete tar archive" in str(info.value)


def test_gzip_of_something_else_than_a_tar(tmp_path):
    import gzip

    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(gzip.compress(b"label,pixels\n" * 1000))
    with pytest.raises(ArchiveFormatError, match="expected a complete tar archive"):
        read_cifar_archive(archive, CIFAR10)


def test_corrupt_gzip_data(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=20)
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    assert str(archive) in str(info.value)


def test_missing_archive_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_cifar_archive(tmp_path / "nothing.tar.gz", CIFAR10)


def test_wanted_member_that_is_a_folder_is_refused(tmp_path):
    archive = ca.write_tar(tmp_path / "a.tar.gz", [ca.folder("d"), ca.folder("d/x.bin")])
    with pytest.raises(ArchiveFormatError, match=r"member 'd/x\.bin': expected a regular file, found a folder"):
        read_tar_members(archive, ["d/x.bin"])


def test_duplicate_wanted_member_is_refused(tmp_path):
    archive = ca.write_tar(tmp_path / "a.tar.gz", [ca.member("d/x.bin", b"1"), ca.member("./d/x.bin", b"2")])
    with pytest.raises(ArchiveFormatError, match="found it twice"):
        read_tar_members(archive, ["d/x.bin"])


def test_expected_count_mismatch_gives_both_numbers(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=20, test=15)
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10, {"train": 50_000, "test": 10_000})
    message = str(info.value)
    assert str(archive) in message
    assert "expected 50,000 train records, found 100" in message


def test_expected_counts_with_an_unknown_split_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match=re.escape("keys must be 'train' and/or 'test'. Received: {'valid': 5}")):
        read_cifar_archive(tmp_path / "x.tar.gz", CIFAR10, {"valid": 5})


def test_unequal_batches_are_still_concatenated_in_order(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    expected = ca.make_cifar10_archive(archive, per_batch=6, test=3)
    shorter = tmp_path / "shorter.tar.gz"
    ca.make_cifar10_archive(
        shorter, per_batch=6, test=3, mutate=lambda m: {**m, "data_batch_4.bin": m["data_batch_4.bin"][: 2 * 3073]}
    )
    result = read_cifar_archive(shorter, CIFAR10)
    keep = np.r_[0:20, 24:30]  # batch 4 holds records 18..23 of the full set; its first 2 are kept
    np.testing.assert_array_equal(result["train_images"], expected["train_images"][keep])
    np.testing.assert_array_equal(result["train_labels"], expected["train_labels"][keep])


def test_wrong_number_of_class_names(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    nine = ("\n".join(ca.CIFAR10_CLASSES[:9]) + "\n\n").encode()
    ca.make_cifar10_archive(archive, mutate=lambda m: {**m, "batches.meta.txt": nine})
    with pytest.raises(ArchiveFormatError) as info:
        read_cifar_archive(archive, CIFAR10)
    message = str(info.value)
    assert str(archive) in message and "cifar-10-batches-bin/batches.meta.txt" in message
    assert "expected 10 class names for the 'label' label" in message and "found 9" in message


def test_wrong_number_of_cifar100_fine_names(tmp_path):
    archive = tmp_path / "cifar-100-binary.tar.gz"
    names = ("\n".join(ca.CIFAR100_FINE_CLASSES[:99]) + "\n").encode()
    ca.make_cifar100_archive(archive, mutate=lambda m: {**m, "fine_label_names.txt": names})
    with pytest.raises(
        ArchiveFormatError, match=r"fine_label_names\.txt.*expected 100 class names for the 'fine' label.*found 99"
    ):
        read_cifar_archive(archive, CIFAR100)


# --- unsafe archives --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "cifar-10-batches-bin/../../evil", "/tmp/evil_absolute", "C:/evil"])
def test_member_escaping_the_folder_is_unsafe(tmp_path, name):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=1, test=1, mutate=lambda m: {**m, name: b"pwned"})
    with pytest.raises(UnsafeArchiveError) as info:
        read_cifar_archive(archive, CIFAR10)
    assert str(archive) in str(info.value) and repr(name) in str(info.value)


def test_wanted_member_that_is_a_symlink_is_unsafe(tmp_path):
    archive = ca.write_tar(tmp_path / "a.tar.gz", [ca.folder("d"), ca.symlink("d/x.bin", "/etc/passwd")])
    with pytest.raises(UnsafeArchiveError, match=r"member 'd/x\.bin': expected a regular file, found a symbolic link"):
        read_tar_members(archive, ["d/x.bin"])


def test_truncation_after_the_wanted_members_is_still_detected(tmp_path):
    rng = np.random.default_rng(1)
    archive = ca.write_tar(
        tmp_path / "a.tar.gz",
        [ca.member("d/a.bin", b"wanted"), ca.member("d/readme.html", rng.integers(0, 256, 50_000, np.uint8).tobytes())],
    )
    ca.truncate(archive, 0.5)
    with pytest.raises(ArchiveFormatError, match=r"after member 'd/readme\.html', but it is truncated"):
        read_tar_members(archive, ["d/a.bin"])


def test_truncation_in_the_closing_blocks_is_detected(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    ca.make_cifar10_archive(archive, per_batch=2, test=2)
    data = archive.read_bytes()
    archive.write_bytes(data[:-12])  # the gzip trailer and the end of the deflate stream
    with pytest.raises(ArchiveFormatError, match="compressed stream, found it cut short"):
        read_cifar_archive(archive, CIFAR10)
