"""Tests for the FER2013 reader, on the exact official format of ``fer2013.csv`` and Kaggle's archive."""

from __future__ import annotations

import cifar_archives as ca
import fer_files as ff
import numpy as np
import pytest

from convbench.data import fer2013
from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError
from convbench.data.fer2013 import (
    FerFormatError,
    check_counts,
    load_fer2013,
    locate_fer2013,
    parse_fer2013_csv,
)

EXPECTED_PIXELS = "expected 2,304 integers 0-255 separated by single spaces (48x48 pixels)"


def _parse(text: bytes, **kwargs) -> fer2013.Fer2013Table:
    return parse_fer2013_csv(text, source="fer2013.csv", **kwargs)


def _assert_rows(table: fer2013.Fer2013Table, rows: ff.Fer2013Rows) -> None:
    assert table.images.dtype == np.uint8
    assert table.images.shape == (len(rows.usages), 48, 48, 1)
    assert table.images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(table.images, rows.images)
    assert table.emotions.dtype == np.int64
    np.testing.assert_array_equal(table.emotions, rows.emotions)
    assert [list(fer2013.USAGE_TO_SPLIT)[code] for code in table.usage] == rows.usages


def _bad_pixels(rows: ff.Fer2013Rows, row: int, pixels: str) -> bytes:
    """Return the CSV of `rows` with the pixels field of 0-based `row` replaced by `pixels`."""
    lines = ff.fer2013_text(rows).decode().split("\n")
    emotion, _, usage = lines[row + 1].split(",")
    lines[row + 1] = f"{emotion},{pixels},{usage}"
    return "\n".join(lines).encode()


def _pixel_text(rows: ff.Fer2013Rows, row: int) -> list[str]:
    return [str(int(v)) for v in rows.images[row].reshape(-1)]


# --- format facts ---------------------------------------------------------------------------


def test_format_facts_match_the_official_file():
    assert tuple(ff.FER_HEADER.split(",")) == fer2013.FER2013_COLUMNS
    assert fer2013.FER2013_CLASS_NAMES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert fer2013.USAGE_TO_SPLIT == {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    assert fer2013.PIXELS_PER_IMAGE == 2304
    assert fer2013.FER2013_ARCHIVE_MEMBER == "fer2013/fer2013.csv"


# --- fer2013.csv: exact round trips ------------------------------------------------------------


def test_kaggle_format_roundtrip_is_exact():
    rows = ff.fer2013_rows()
    text = ff.fer2013_text(rows)
    assert text.startswith(b"emotion,pixels,Usage\n")
    assert b'"' not in text and b"\r" not in text
    table = _parse(text)
    _assert_rows(table, rows)
    assert table.split_counts() == {"train": 6, "val": 3, "test": 3}
    np.testing.assert_array_equal(table.split_rows("val"), [6, 7, 8])


def test_pixels_are_row_major_and_every_digit_count_decodes():
    rows = ff.fer2013_rows()
    table = _parse(ff.fer2013_text(rows))
    assert table.images[0, 0, :6, 0].tolist() == [0, 9, 10, 99, 100, 255]


def test_hand_written_row_decodes_to_the_expected_image():
    pixels = np.arange(2304) % 256
    text = b"emotion,pixels,Usage\n5," + " ".join(map(str, pixels)).encode() + b",PrivateTest\n"
    table = _parse(text)
    assert table.images.shape == (1, 48, 48, 1)
    assert table.images[0, 1, 0, 0] == 48  # second image row starts at pixel 48
    assert table.images[0, 47, 47, 0] == 2303 % 256
    assert table.emotions.tolist() == [5]
    assert table.split_counts() == {"train": 0, "val": 0, "test": 1}


@pytest.mark.parametrize(
    "options",
    [
        {"quote": "pixels"},
        {"quote": "all"},
        {"line_end": "\r\n"},
        {"quote": "all", "line_end": "\r\n"},
    ],
)
def test_quoted_fields_and_crlf_line_ends_are_read(options):
    rows = ff.fer2013_rows()
    _assert_rows(_parse(ff.fer2013_text(rows, **options)), rows)


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: b"\xef\xbb\xbf" + text,  # byte order mark
        lambda text: text.rstrip(b"\n"),  # no line end after the last row
        lambda text: text + b"\n\n",  # blank lines at the end
    ],
)
def test_byte_order_mark_and_file_ends_are_tolerated(edit):
    rows = ff.fer2013_rows()
    _assert_rows(_parse(edit(ff.fer2013_text(rows))), rows)


def test_columns_are_matched_by_name_in_any_order():
    rows = ff.fer2013_rows()
    lines = ff.fer2013_text(rows).decode().splitlines()
    reordered = ["emotion, Usage, pixels"]  # the order and spacing of Kaggle's icml_face_data.csv
    for line in lines[1:]:
        emotion, pixels, usage = line.split(",")
        reordered.append(f"{emotion},{usage},{pixels}")
    _assert_rows(_parse("\n".join(reordered).encode()), rows)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_many_chunks_on_threads_keep_the_row_order(workers):
    rows = ff.fer2013_rows({"Training": 50, "PublicTest": 20, "PrivateTest": 13}, seed=3)
    _assert_rows(_parse(ff.fer2013_text(rows), workers=workers), rows)


def test_a_placed_file_is_split_by_usage_and_its_counts_checked(tmp_path):
    path = tmp_path / "fer2013.csv"
    rows = ff.write_fer2013_csv(path, ff.fer2013_rows({"Training": 4, "PublicTest": 2, "PrivateTest": 3}))
    table = load_fer2013(path)
    check_counts(table, {"train": 4, "val": 2, "test": 3})
    check_counts(table, {"test": 3})
    check_counts(table, None)
    assert table.source == str(path)
    assert table.split_counts() == {"train": 4, "val": 2, "test": 3}
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        expected_rows = rows.split_rows(usage)
        split_rows = table.split_rows(split)
        assert split_rows.dtype == np.int64
        np.testing.assert_array_equal(split_rows, expected_rows)
        np.testing.assert_array_equal(table.images[split_rows], rows.images[expected_rows])
        np.testing.assert_array_equal(table.emotions[split_rows], rows.emotions[expected_rows])


def test_expected_counts_mismatch_names_file_split_usage_and_both_numbers(tmp_path):
    path = tmp_path / "fer2013.csv"
    ff.write_fer2013_csv(path)
    table = load_fer2013(path)
    with pytest.raises(FerFormatError) as info:
        check_counts(table, {"train": 7, "val": 3589, "test": 3})
    assert str(info.value) == (
        f"{path}: expected other row counts per split: train (Training): expected 7, found 6; "
        "val (PublicTest): expected 3,589, found 3"
    )
    with pytest.raises(ValueError, match=r"expected_counts keys must be among train, val, test\. Received: "):
        check_counts(table, {"validation": 3})


# --- locating the file, reading Kaggle's archive --------------------------------------------------


def test_locate_prefers_the_csv_then_the_archive(tmp_path):
    archive = tmp_path / "fer2013.tar.gz"
    ff.write_fer2013_archive(archive, b"")
    assert locate_fer2013(tmp_path) == archive
    (tmp_path / "fer2013.csv").write_bytes(b"")
    assert locate_fer2013(tmp_path) == tmp_path / "fer2013.csv"


def test_locate_without_either_file_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        locate_fer2013(tmp_path / "01_raw")
    message = str(info.value)
    assert fer2013.FER2013_PAGE_URL in message
    assert "kaggle.com" in message and "login" in message
    assert str((tmp_path / "01_raw" / "fer2013.csv").resolve()) in message
    assert str((tmp_path / "01_raw" / "fer2013.tar.gz").resolve()) in message


def test_kaggle_archive_is_read_without_extracting(tmp_path):
    rows = ff.fer2013_rows()
    archive = ff.write_fer2013_archive(tmp_path / "fer2013.tar.gz", ff.fer2013_text(rows))
    table = load_fer2013(archive)
    _assert_rows(table, rows)
    assert table.source == f"{archive}, member 'fer2013/fer2013.csv'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013.tar.gz"]


def test_errors_inside_the_archive_name_archive_and_member(tmp_path):
    rows = ff.fer2013_rows()
    archive = ff.write_fer2013_archive(tmp_path / "fer2013.tar.gz", _bad_pixels(rows, 1, "1 2 3"))
    with pytest.raises(FerFormatError, match=r"fer2013\.tar\.gz, member 'fer2013/fer2013\.csv': data row 2 \(line 3\)"):
        load_fer2013(archive)


def test_archive_without_the_csv_lists_what_it_holds(tmp_path):
    archive = ff.write_fer2013_archive(tmp_path / "fer2013.tar.gz", b"x", member="fer2013/train.csv")
    with pytest.raises(ArchiveFormatError, match=r"fer2013/fer2013\.csv.*missing.*fer2013/train\.csv"):
        load_fer2013(archive)


def test_truncated_archive_is_refused(tmp_path):
    archive = ff.write_fer2013_archive(tmp_path / "fer2013.tar.gz", ff.fer2013_text(ff.fer2013_rows()))
    ca.truncate(archive, 0.6)
    with pytest.raises(ArchiveFormatError, match="truncated"):
        load_fer2013(archive)


def test_archive_with_a_link_or_escaping_path_is_unsafe(tmp_path):
    entries = [ca.folder("fer2013"), ca.symlink("fer2013/fer2013.csv", "/etc/passwd")]
    linked = ca.write_tar(tmp_path / "fer2013.tar.gz", entries)
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        load_fer2013(linked)
    escaping = ca.write_tar(tmp_path / "escape.tar.gz", [ca.member("../fer2013.csv", b"x")])
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        load_fer2013(escaping)


# --- fer2013.csv: every bad input, named by file, row and expectation ------------------------------


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("emotion,Usage", "missing: pixels"),
        ("Emotion,pixels,Usage", "missing: emotion"),
        ("emotion,pixels,Usage,pixels", "repeated: pixels"),
        ("", "missing: emotion, pixels, Usage"),
    ],
)
def test_missing_or_repeated_columns_are_named(header, problem):
    text = (header + "\n0,1 2,Training\n").encode()
    expected = rf"^fer2013\.csv: line 1 \(header\): expected the columns emotion,pixels,Usage; {problem}"
    with pytest.raises(FerFormatError, match=expected):
        _parse(text)


def test_header_only_is_refused():
    with pytest.raises(FerFormatError, match="expected data rows after the header, found none"):
        _parse(b"emotion,pixels,Usage\n")


@pytest.mark.parametrize(("count", "found"), [(2303, "2,303"), (2305, "2,305"), (1, "1")])
def test_wrong_pixel_count_names_row_line_and_both_counts(count, found):
    rows = ff.fer2013_rows()
    pixels = " ".join((_pixel_text(rows, 4) * 2)[:count])
    with pytest.raises(FerFormatError) as info:
        _parse(_bad_pixels(rows, 4, pixels))
    message = str(info.value)
    assert message.startswith("fer2013.csv: data row 5 (line 6): ")
    assert f"pixels holds {found} values, {EXPECTED_PIXELS}" in message
    assert info.value.row == 5


@pytest.mark.parametrize(
    ("bad_value", "shown"),
    [
        ("12a", "'12a'"),
        ("256", "'256'"),
        ("1000", "'1000'"),
        ("-1", "'-1'"),
        ("3.5", "'3.5'"),
        ("x", "'x'"),
        ("٣", "'٣'"),  # a non-ASCII digit
    ],
)
def test_non_numeric_or_out_of_range_pixel_is_named(bad_value, shown):
    rows = ff.fer2013_rows()
    values = _pixel_text(rows, 2)
    values[16] = bad_value
    with pytest.raises(FerFormatError) as info:
        _parse(_bad_pixels(rows, 2, " ".join(values)))
    assert str(info.value) == (
        f"fer2013.csv: data row 3 (line 4): pixel 17 is {shown}, expected 2,304 integers 0-255 separated by "
        "single spaces (48x48 pixels)"
    )


@pytest.mark.parametrize(
    "make_pixels",
    [
        lambda values: "  ".join(values),  # two spaces between values
        lambda values: " " + " ".join(values),  # a leading space
        lambda values: " ".join(values) + " ",  # a trailing space
        lambda values: "\t".join(values),  # tabs
    ],
)
def test_bad_separators_are_refused_with_the_row(make_pixels):
    rows = ff.fer2013_rows()
    with pytest.raises(FerFormatError, match=r"^fer2013\.csv: data row 6 \(line 7\): pixel"):
        _parse(_bad_pixels(rows, 5, make_pixels(_pixel_text(rows, 5))))


def test_empty_pixels_field_is_refused():
    rows = ff.fer2013_rows()
    with pytest.raises(FerFormatError, match=r"data row 1 \(line 2\): pixels is empty, expected 2,304 integers"):
        _parse(_bad_pixels(rows, 0, ""))


def test_bad_row_in_a_late_chunk_on_threads_is_the_one_reported():
    rows = ff.fer2013_rows({"Training": 90}, seed=1)
    text = _bad_pixels(rows, 77, " ".join(_pixel_text(rows, 77)[:-1]))
    for workers in (1, 2):
        with pytest.raises(FerFormatError, match=r"data row 78 \(line 79\): pixels holds 2,303 values"):
            _parse(text, workers=workers)


def test_the_first_of_several_bad_rows_is_reported():
    rows = ff.fer2013_rows({"Training": 80}, seed=2)
    text = _bad_pixels(rows, 70, "1 2")
    lines = text.decode().split("\n")
    lines[41] = lines[41].replace(" ", "  ", 1)
    with pytest.raises(FerFormatError, match=r"data row 41 \(line 42\): pixel 2 is empty"):
        _parse("\n".join(lines).encode(), workers=2)


@pytest.mark.parametrize(("emotion", "shown"), [("7", "'7'"), ("x", "'x'"), ("", "''"), ("10", "'10'"), ("-1", "'-1'")])
def test_emotion_out_of_range_is_named(emotion, shown):
    rows = ff.fer2013_rows()
    lines = ff.fer2013_text(rows).decode().split("\n")
    lines[3] = emotion + lines[3][1:]
    with pytest.raises(FerFormatError) as info:
        _parse("\n".join(lines).encode())
    assert str(info.value) == (
        f"fer2013.csv: data row 3 (line 4): emotion is {shown}, expected one of 0-6 "
        "(angry, disgust, fear, happy, sad, surprise, neutral); 1 row(s) are out of range"
    )


@pytest.mark.parametrize("usage", ["Validation", "training", "", "Training "])
def test_unknown_usage_is_named(usage):
    rows = ff.fer2013_rows()
    text = ff.fer2013_text(rows).decode().replace(",PublicTest\n", f",{usage}\n", 2)
    with pytest.raises(FerFormatError) as info:
        _parse(text.encode())
    assert str(info.value) == (
        f"fer2013.csv: data row 7 (line 8): Usage is {usage!r}, expected one of Training, PublicTest, "
        "PrivateTest; 2 row(s) have an unknown Usage"
    )


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (lambda line: line + ",extra", 4),
        (lambda line: line.replace(",", ";", 1), 2),
    ],
)
def test_wrong_field_count_is_named(edit, found):
    lines = ff.fer2013_text(ff.fer2013_rows()).decode().split("\n")
    lines[2] = edit(lines[2])
    expected = rf"data row 2 \(line 3\): expected 3 comma-separated fields like the header, found {found}: "
    with pytest.raises(FerFormatError, match=expected):
        _parse("\n".join(lines).encode())


def test_blank_line_in_the_middle_is_refused():
    lines = ff.fer2013_text(ff.fer2013_rows()).decode().split("\n")
    lines.insert(4, "")
    expected = r"data row 4 \(line 5\): expected 3 comma-separated fields like the header, found 1"
    with pytest.raises(FerFormatError, match=expected):
        _parse("\n".join(lines).encode())


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_file_says_the_last_line_may_be_cut(fraction):
    text = ff.fer2013_text(ff.fer2013_rows())
    cut = text[: int(len(text) * fraction)]
    with pytest.raises(FerFormatError, match=r"found 2 \(the last line: is the file truncated\?\)"):
        _parse(cut)


def test_file_cut_inside_the_last_usage_is_an_unknown_usage():
    text = ff.fer2013_text(ff.fer2013_rows())
    with pytest.raises(FerFormatError, match=r"data row 12 \(line 13\): Usage is 'Privat'"):
        _parse(text[:-6])


def test_error_messages_never_pass_silently_for_a_valid_looking_row():
    # A row whose pixel count is right but one value is not a number must fail, not decode.
    rows = ff.fer2013_rows()
    values = _pixel_text(rows, 0)
    values[100] = "1x2"
    values.pop()  # keep the space count at 2,303
    with pytest.raises(FerFormatError, match=r"pixel 101 is '1x2'"):
        _parse(_bad_pixels(rows, 0, " ".join(values)))
