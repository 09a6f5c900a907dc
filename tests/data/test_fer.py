"""Tests for the FER2013 and FERPlus parsers, on the exact official formats and the real FERPlus file."""

from __future__ import annotations

import hashlib

import cifar_archives as ca
import fer_files as ff
import numpy as np
import pytest

from convbench.data import fer
from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError
from convbench.data.fer import (
    DROP_REASONS,
    FERPLUS_CLASS_NAMES,
    LABEL_MODES,
    FerFormatError,
    ferplus_targets,
    join_ferplus,
    load_fer2013,
    locate_fer2013,
    parse_fer2013_csv,
    parse_ferplus_csv,
    read_fer2013,
    read_ferplus,
    resize_images,
    to_rgb,
)

REFERENCE_MODES = fer.REFERENCE_MODES
EXPECTED_PIXELS = "expected 2,304 integers 0-255 separated by single spaces (48x48 pixels)"


def _parse(text: bytes, **kwargs) -> fer.Fer2013Table:
    return parse_fer2013_csv(text, source="fer2013.csv", **kwargs)


def _assert_rows(table: fer.Fer2013Table, rows: ff.Fer2013Rows) -> None:
    assert table.images.dtype == np.uint8
    assert table.images.shape == (len(rows.usages), 48, 48, 1)
    assert table.images.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(table.images, rows.images)
    assert table.emotions.dtype == np.int64
    np.testing.assert_array_equal(table.emotions, rows.emotions)
    assert [list(fer.USAGE_TO_SPLIT)[code] for code in table.usage] == rows.usages


def _bad_pixels(rows: ff.Fer2013Rows, row: int, pixels: str) -> bytes:
    """Return the CSV of `rows` with the pixels field of 0-based `row` replaced by `pixels`."""
    lines = ff.fer2013_text(rows).decode().split("\n")
    emotion, _, usage = lines[row + 1].split(",")
    lines[row + 1] = f"{emotion},{pixels},{usage}"
    return "\n".join(lines).encode()


def _pixel_text(rows: ff.Fer2013Rows, row: int) -> list[str]:
    return [str(int(v)) for v in rows.images[row].reshape(-1)]


# --- format facts ---------------------------------------------------------------------------


def test_format_facts_match_the_official_files():
    assert tuple(ff.FER_HEADER.split(",")) == fer.FER2013_COLUMNS
    assert tuple(ff.FERPLUS_HEADER.split(",")) == fer.FERPLUS_COLUMNS
    assert ff.ferplus_sample_lines()[0] == ff.FERPLUS_HEADER
    assert fer.FER2013_CLASS_NAMES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert FERPLUS_CLASS_NAMES == (
        "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    )  # fmt: skip
    assert fer.USAGE_TO_SPLIT == {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    assert fer.PIXELS_PER_IMAGE == 2304
    assert (fer.UNKNOWN, fer.NOT_FACE) == (8, 9)
    assert fer.FER2013_ARCHIVE_MEMBER == "fer2013/fer2013.csv"


def test_ferplus_fixture_is_the_published_file():
    digest = hashlib.sha256(ff.FERPLUS_SAMPLE.read_bytes()).hexdigest()
    assert digest == ff.FERPLUS_SHA256


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


def test_read_fer2013_splits_by_usage(tmp_path):
    path = tmp_path / "fer2013.csv"
    rows = ff.write_fer2013_csv(path, ff.fer2013_rows({"Training": 4, "PublicTest": 2, "PrivateTest": 3}))
    result = read_fer2013(path, {"train": 4, "val": 2, "test": 3})
    keys = {f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels", "indices")}
    assert set(result) == keys | {"class_names"}
    assert result["class_names"] == list(fer.FER2013_CLASS_NAMES)
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        expected_rows = rows.split_rows(usage)
        np.testing.assert_array_equal(result[f"{split}_indices"], expected_rows)
        np.testing.assert_array_equal(result[f"{split}_images"], rows.images[expected_rows])
        np.testing.assert_array_equal(result[f"{split}_labels"], rows.emotions[expected_rows])
        assert result[f"{split}_labels"].dtype == np.int64


def test_expected_counts_mismatch_names_split_usage_and_both_numbers(tmp_path):
    path = tmp_path / "fer2013.csv"
    ff.write_fer2013_csv(path)
    with pytest.raises(FerFormatError, match=r"fer2013\.csv: .*val \(PublicTest\): expected 3,589, found 3"):
        read_fer2013(path, {"train": 6, "val": 3589})
    with pytest.raises(ValueError, match="expected_counts keys"):
        read_fer2013(path, {"validation": 3})


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
    assert fer.FER2013_PAGE_URL in message
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


# --- fer2013new.csv ---------------------------------------------------------------------------


def test_real_ferplus_file_parses_to_its_known_counts():
    votes = fer.load_ferplus(ff.FERPLUS_SAMPLE)
    assert votes.votes.shape == (35887, 10)
    assert votes.votes.dtype == np.int64
    assert np.bincount(votes.usage).tolist() == [28709, 3589, 3589]
    assert int((~votes.has_image).sum()) == 173
    assert set(votes.votes.sum(axis=1).tolist()) == {9, 10}
    assert votes.image_names[0] == "fer0000000.png"
    assert votes.votes[0].tolist() == [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    assert votes.image_names[17] == "" and votes.votes[17].tolist() == [0] * 9 + [10]


def test_ferplus_slice_with_every_usage_parses():
    text = ff.ferplus_slice(["Training", "PublicTest", "PrivateTest", "Training"])
    votes = parse_ferplus_csv(text, source="fer2013new.csv")
    assert votes.usage.tolist() == [0, 1, 2, 0]
    assert votes.image_names[0] == "fer0000000.png"


def test_ferplus_fields_are_stripped_like_the_reference():
    text = ff.FERPLUS_HEADER + "\nTraining , fer0.png ,1, 2,3,0,0,0,0,0,0,4\r\n"
    votes = parse_ferplus_csv(text.encode(), source="x")
    assert votes.image_names == ["fer0.png"]
    assert votes.votes.tolist() == [[1, 2, 3, 0, 0, 0, 0, 0, 0, 4]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Training,a.png,1,2,3", r"expected 12 comma-separated fields \(Usage,Image name,neutral"),
        ("Testing,a.png,0,0,0,0,0,0,0,0,0,10", r"Usage is 'Testing', expected one of Training, PublicTest, Private"),
        ("Training,a.png,0,0,x,0,0,0,0,0,0,10", r"column 'surprise' is 'x', expected a vote count, an integer 0-10"),
        ("Training,a.png,0,0,0,0,0,0,0,0,11,0", r"column 'unknown' is '11', expected a vote count"),
        ("Training,a.png,-1,0,0,0,0,0,0,0,0,10", r"column 'neutral' is '-1'"),
        ("Training,a.png,0,0,0,0,0,0,0,0,0,", r"column 'NF' is ''"),
    ],
)
def test_bad_ferplus_rows_are_named(line, message):
    text = f"{ff.FERPLUS_HEADER}\nTraining,ok.png,10,0,0,0,0,0,0,0,0,0\n{line}\n"
    with pytest.raises(FerFormatError, match=r"^fer2013new\.csv: data row 2 \(line 3\): " + message):
        parse_ferplus_csv(text.encode(), source="fer2013new.csv")


@pytest.mark.parametrize("header", ["Usage,Image name,neutral", ff.FERPLUS_HEADER.replace("NF", "nonface"), ""])
def test_wrong_ferplus_header_is_refused(header):
    with pytest.raises(FerFormatError, match=r"line 1 \(header\): expected the columns Usage,Image name,neutral,"):
        parse_ferplus_csv((header + "\nTraining,a.png,10,0,0,0,0,0,0,0,0,0\n").encode(), source="x")


def test_ferplus_header_only_and_non_ascii_are_refused():
    with pytest.raises(FerFormatError, match="expected data rows after the header, found none"):
        parse_ferplus_csv((ff.FERPLUS_HEADER + "\n").encode(), source="x")
    text = ff.FERPLUS_HEADER + "\nTraining,a,10,0,0,0,0,0,0,0,0,0\nTraining,é,10,0,0,0,0,0,0,0,0,0\n"
    with pytest.raises(FerFormatError, match="line 3: expected ASCII text"):
        parse_ferplus_csv(text.encode(), source="x")


# --- label schemes: hand-computed examples of the reference rules ---------------------------------

E = 0.001  # multi_target's floor
# (votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF) ->
# mode -> (reason, target over the 8 emotions, label). Worked by hand from microsoft/FERPlus src/ferplus.py.
HAND_EXAMPLES = {
    # Real row 0. Single votes removed: neutral 4, anger 3, disgust 2; 9 votes.
    (4, 0, 0, 1, 3, 2, 0, 0, 0, 0): {
        "majority": ("ambiguous", None, None),  # 4 is not more than 4.5
        "probability": ("", [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0], 0),  # 4 then 3: 7 >= 6.75 covered
        "crossentropy": ("", [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0], 0),
        "multi_target": ("", [1, E, E, E, 1, E, E, E], 0),  # 4 and 3 >= 2.7; disgust 2 is not
        "seed_distribution": ("", [0.4, 0, 0, 0.1, 0.3, 0.2, 0, 0], 0),  # raw counts over 10
    },
    # Real row 1: neutral 6, unknown 2 kept; 8 votes.
    (6, 0, 1, 1, 0, 0, 0, 0, 2, 0): {
        "majority": ("", [1, 0, 0, 0, 0, 0, 0, 0], 0),  # 6 > 4
        "probability": ("", [1, 0, 0, 0, 0, 0, 0, 0], 0),  # 6 covers 75% of 8: stop
        "crossentropy": ("", [1, 0, 0, 0, 0, 0, 0, 0], 0),
        "multi_target": ("", [1, E, E, E, E, E, E, E], 0),  # unknown 2 < 2.4
        "seed_distribution": ("", [6 / 8, 0, 1 / 8, 1 / 8, 0, 0, 0, 0], 0),
    },
    # unknown has the majority.
    (2, 0, 0, 0, 0, 0, 0, 0, 6, 2): {
        "majority": ("unknown_wins", None, None),
        "probability": ("unknown_wins", None, None),  # unknown is the first class taken
        "crossentropy": ("unknown_wins", None, None),
        "multi_target": ("unknown_wins", None, None),  # only unknown reaches 3
        "seed_distribution": ("", [1, 0, 0, 0, 0, 0, 0, 0], 0),
    },
    # Not a face (the rows FERPlus gives no image name look like this).
    (0, 0, 0, 0, 0, 0, 0, 0, 0, 10): {
        "majority": ("not_face_wins", None, None),
        "probability": ("not_face_wins", None, None),
        "crossentropy": ("not_face_wins", None, None),
        "multi_target": ("not_face_wins", None, None),
        "seed_distribution": ("no_votes", None, None),  # no emotion vote
    },
    # neutral ties with unknown.
    (4, 0, 0, 0, 0, 0, 0, 0, 4, 2): {
        "majority": ("ambiguous", None, None),  # 4 is not more than 5
        "probability": ("ambiguous", None, None),  # neutral taken, unknown ends it: 4 <= 5 covered
        "crossentropy": ("ambiguous", None, None),
        "multi_target": ("", [1, E, E, E, E, E, E, E], 0),  # neutral and unknown >= 3; argmax is neutral
        "seed_distribution": ("", [1, 0, 0, 0, 0, 0, 0, 0], 0),
    },
    # Four classes tie at 2 (after removing two single votes): more than 3 classes.
    (2, 2, 2, 2, 1, 1, 0, 0, 0, 0): {
        "majority": ("ambiguous", None, None),
        "probability": ("ambiguous", None, None),  # one level takes 4 classes
        "crossentropy": ("ambiguous", None, None),
        "multi_target": ("ambiguous", None, None),  # none reaches 2.4
        "seed_distribution": ("", [0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0, 0], 0),
    },
    # Three classes, the last two tied.
    (4, 3, 3, 0, 0, 0, 0, 0, 0, 0): {
        "majority": ("ambiguous", None, None),
        "probability": ("", [0.4, 0.3, 0.3, 0, 0, 0, 0, 0], 0),
        "crossentropy": ("", [0.4, 0.3, 0.3, 0, 0, 0, 0, 0], 0),
        "multi_target": ("", [1, 1, 1, E, E, E, E, E], 0),
        "seed_distribution": ("", [0.4, 0.3, 0.3, 0, 0, 0, 0, 0], 0),
    },
    # Happiness leads; 8 of 10 covered after two levels.
    (0, 5, 3, 0, 0, 0, 0, 0, 2, 0): {
        "majority": ("ambiguous", None, None),  # 5 is not more than 5
        "probability": ("", [0, 5 / 8, 3 / 8, 0, 0, 0, 0, 0], 1),
        "crossentropy": ("", [0, 5 / 8, 3 / 8, 0, 0, 0, 0, 0], 1),
        "multi_target": ("", [E, 1, 1, E, E, E, E, E], 1),
        "seed_distribution": ("", [0, 5 / 8, 3 / 8, 0, 0, 0, 0, 0], 1),
    },
    # Contempt wins clearly.
    (1, 0, 0, 0, 0, 0, 0, 9, 0, 0): {
        "majority": ("", [0, 0, 0, 0, 0, 0, 0, 1], 7),
        "probability": ("", [0, 0, 0, 0, 0, 0, 0, 1], 7),
        "crossentropy": ("", [0, 0, 0, 0, 0, 0, 0, 1], 7),
        "multi_target": ("", [E, E, E, E, E, E, E, 1], 7),
        "seed_distribution": ("", [0.1, 0, 0, 0, 0, 0, 0, 0.9], 7),
    },
    # Ten different single votes: nothing survives the noise removal.
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1): {
        "majority": ("no_votes", None, None),
        "probability": ("no_votes", None, None),
        "crossentropy": ("no_votes", None, None),
        "multi_target": ("no_votes", None, None),
        "seed_distribution": ("", [1 / 8] * 8, 0),
    },
    # All zero.
    (0,) * 10: dict.fromkeys(LABEL_MODES, ("no_votes", None, None)),
}


@pytest.mark.parametrize("mode", LABEL_MODES)
@pytest.mark.parametrize("votes", list(HAND_EXAMPLES))
def test_label_modes_match_hand_computed_examples(votes, mode):
    reason, target, label = HAND_EXAMPLES[votes][mode]
    outcome = ferplus_targets(np.array([votes]), mode)
    assert outcome.reasons[0] == reason
    assert outcome.targets.dtype == np.float32 and outcome.labels.dtype == np.int64
    if reason:
        assert outcome.labels[0] == -1
        np.testing.assert_array_equal(outcome.targets[0], np.zeros(8))
    else:
        assert outcome.labels[0] == label
        np.testing.assert_allclose(outcome.targets[0], target, rtol=1e-6)


@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_hand_examples_agree_with_the_row_by_row_restatement(mode):
    for votes, expected in HAND_EXAMPLES.items():
        reason, target, label = ff.reference_label(votes, mode)
        assert reason == expected[mode][0], votes
        if not reason:
            np.testing.assert_allclose(target, expected[mode][1], rtol=1e-9)
            assert label == expected[mode][2]


@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_every_real_row_matches_the_row_by_row_restatement(mode):
    _, _, votes = ff.real_votes()
    outcome = ferplus_targets(votes, mode)
    distinct, row_of = np.unique(votes, axis=0, return_inverse=True)  # 5,335 distinct vote rows
    expected = [ff.reference_label(row_votes, mode) for row_votes in distinct.tolist()]
    reasons = np.array([reason for reason, _, _ in expected])[row_of]
    labels = np.array([-1 if label is None else label for _, _, label in expected])[row_of]
    targets = np.array([[0.0] * 8 if target is None else target for _, target, _ in expected])[row_of]
    np.testing.assert_array_equal(outcome.reasons, reasons)
    np.testing.assert_array_equal(outcome.labels, labels)
    np.testing.assert_allclose(outcome.targets, targets, rtol=1e-6)


# Rows kept and dropped per reason on the real fer2013new.csv (train in the mode; val and test
# always majority). The 173 rows without an image name are 148 / 10 / 15.
def _drops(**counts: int) -> dict[str, int]:
    """Return a drop-count dict: every reason, zero unless given."""
    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}


REAL_COUNTS = {  # mode -> (train rows kept, train drops)
    "majority": (25060, _drops(no_image_name=148, unknown_wins=76, not_face_wins=2, ambiguous=3423)),
    "probability": (27956, _drops(no_image_name=148, unknown_wins=170, not_face_wins=2, ambiguous=433)),
    "crossentropy": (27956, _drops(no_image_name=148, unknown_wins=170, not_face_wins=2, ambiguous=433)),
    "multi_target": (27671, _drops(no_image_name=148, unknown_wins=120, not_face_wins=2, ambiguous=768)),
    "seed_distribution": (28559, _drops(no_image_name=148, no_votes=2)),
}
REAL_VAL = (3199, _drops(no_image_name=10, unknown_wins=13, ambiguous=367))
REAL_TEST = (3153, _drops(no_image_name=15, unknown_wins=10, not_face_wins=1, ambiguous=410))


@pytest.fixture(scope="module")
def real_table_and_votes():
    """The real FERPlus votes joined with stand-in pixels (a 1x1-pixel-per-row table, same Usage)."""
    votes = fer.load_ferplus(ff.FERPLUS_SAMPLE)
    rows = votes.usage.shape[0]
    images = (np.arange(rows) % 251).astype(np.uint8)[:, None, None, None] * np.ones((1, 48, 48, 1), np.uint8)
    emotions = np.zeros(rows, np.int64)
    table = fer.Fer2013Table(images=images, emotions=emotions, usage=votes.usage.copy(), source="stand-in")
    return table, votes


@pytest.mark.parametrize("mode", LABEL_MODES)
def test_real_file_counts_per_mode_split_and_reason(real_table_and_votes, mode):
    table, votes = real_table_and_votes
    data = join_ferplus(table, votes, mode)
    expected = {"train": REAL_COUNTS[mode], "val": REAL_VAL, "test": REAL_TEST}
    for split, (kept, drops) in expected.items():
        assert data.labels[split].shape[0] == kept, split
        assert data.drop_counts[split] == drops, split
        assert data.row_counts[split] == {"train": 28709, "val": 3589, "test": 3589}[split]
        # Nothing is silently lost: every row is kept or counted under one reason.
        assert sum(data.drop_counts[split].values()) + kept == data.row_counts[split]
    for split in ("train", "val", "test"):
        targets = data.targets[split]
        assert targets.dtype == np.float32 and targets.shape == (data.labels[split].shape[0], 8)
        if mode == "multi_target" and split == "train":
            # A mask: the label (the most-voted target) is one of the targets.
            assert set(np.unique(targets)) <= {np.float32(1.0), np.float32(E)}
            assert (targets[np.arange(targets.shape[0]), data.labels[split]] == 1.0).all()
        else:
            np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
            np.testing.assert_array_equal(np.argmax(targets, axis=1), data.labels[split])
        # The kept rows' images are the ones at their indices.
        np.testing.assert_array_equal(data.images[split][:, 0, 0, 0], data.indices[split] % 251)
    for split in ("val", "test"):
        assert set(np.unique(data.targets[split])) <= {0.0, 1.0}


def test_count_table_and_flat_dict(real_table_and_votes):
    table, votes = real_table_and_votes
    data = join_ferplus(table, votes, "crossentropy")
    rows = data.count_table()
    assert [row["split"] for row in rows] == ["train", "val", "test"]
    assert [row["label_mode"] for row in rows] == ["crossentropy", "majority", "majority"]
    kept, drops = REAL_COUNTS["crossentropy"]
    assert rows[0] == {"split": "train", "label_mode": "crossentropy", "rows": 28709, **drops, "kept": kept}
    flat = data.as_dict()
    assert flat["class_names"] == list(FERPLUS_CLASS_NAMES)
    assert flat["label_mode"] == "crossentropy"
    assert flat["drop_counts"]["test"]["not_face_wins"] == 1
    for split in ("train", "val", "test"):
        assert {f"{split}_{kind}" for kind in ("images", "targets", "labels", "indices")} <= set(flat)
        assert flat[f"{split}_indices"].dtype == np.int64


def test_seed_distribution_uses_raw_counts_and_drops_only_rows_without_emotion_votes():
    _, _, votes = ff.real_votes()
    outcome = ferplus_targets(votes, "seed_distribution")
    emotion_sums = votes[:, :8].sum(axis=1)
    np.testing.assert_array_equal(outcome.reasons == "no_votes", emotion_sums == 0)
    kept = emotion_sums > 0
    np.testing.assert_allclose(outcome.targets[kept], votes[kept, :8] / emotion_sums[kept, None], rtol=1e-6)


def test_unknown_label_mode_is_refused():
    expected = (
        r"label_mode must be one of majority, probability, crossentropy, multi_target, seed_distribution\. "
        r"Received: label_mode='soft'"
    )
    with pytest.raises(ValueError, match=expected):
        ferplus_targets(np.zeros((1, 10), int), "soft")
    with pytest.raises(ValueError, match=r"votes must have shape \(N, 10\)"):
        ferplus_targets(np.zeros((1, 8), int), "majority")


# --- joining the two files ----------------------------------------------------------------------


def _joined_files(tmp_path, votes_by_row, usages=None, names=None):
    """Write a fer2013.csv and a fer2013new.csv with the given votes; return their paths and rows."""
    counts = {"Training": 6, "PublicTest": 3, "PrivateTest": 3}
    rows = ff.fer2013_rows(counts, seed=5)
    usages = usages or rows.usages
    names = names or [f"fer{i:07d}.png" for i in range(len(rows.usages))]
    fer_path = tmp_path / "fer2013.csv"
    ff.write_fer2013_csv(fer_path, rows)
    ferplus_path = tmp_path / "fer2013new.csv"
    ferplus_path.write_bytes(ff.ferplus_text(list(zip(usages, names, votes_by_row))))
    return fer_path, ferplus_path, rows


CLEAR = (10, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SPLIT_VOTES = (4, 3, 3, 0, 0, 0, 0, 0, 0, 0)  # majority: ambiguous; probability/multi_target: kept


@pytest.mark.parametrize("source", ["csv", "archive"])
def test_read_ferplus_end_to_end(tmp_path, source):
    votes = [CLEAR, SPLIT_VOTES, (0,) * 10, (0,) * 9 + (10,), (0, 9, 1, 0, 0, 0, 0, 0, 0, 0), CLEAR]
    votes += [SPLIT_VOTES, CLEAR, CLEAR]  # PublicTest
    votes += [CLEAR, (0, 0, 0, 0, 0, 0, 0, 0, 7, 3), (0, 0, 0, 10, 0, 0, 0, 0, 0, 0)]  # PrivateTest
    names = [f"fer{i:07d}.png" for i in range(12)]
    names[5] = ""  # FERPlus dropped this image; its votes do not matter
    fer_path, ferplus_path, rows = _joined_files(tmp_path, votes, names=names)
    if source == "archive":
        fer_path = ff.write_fer2013_archive(tmp_path / "fer2013.tar.gz", fer_path.read_bytes())
    data = read_ferplus(fer_path, ferplus_path, "probability", {"train": 6, "val": 3, "test": 3})
    assert data.class_names == list(FERPLUS_CLASS_NAMES)
    np.testing.assert_array_equal(data.indices["train"], [0, 1, 4])
    np.testing.assert_array_equal(data.indices["val"], [7, 8])  # row 6 has no majority: dropped in val
    np.testing.assert_array_equal(data.indices["test"], [9, 11])
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(data.images[split], rows.images[data.indices[split]])
        assert data.images[split].dtype == np.uint8
        assert data.labels[split].dtype == np.int64
    np.testing.assert_allclose(data.targets["train"][1], [0.4, 0.3, 0.3, 0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(data.targets["train"][2], [0, 1, 0, 0, 0, 0, 0, 0])  # surprise's single vote is noise
    assert data.labels["test"].tolist() == [0, 3]
    assert data.drop_counts["train"] == _drops(no_image_name=1, no_votes=1, not_face_wins=1)
    assert data.drop_counts["val"] == _drops(ambiguous=1)
    assert data.drop_counts["test"] == _drops(unknown_wins=1)


def test_row_count_mismatch_is_refused(tmp_path):
    fer_path, ferplus_path, _ = _joined_files(tmp_path, [CLEAR] * 12)
    lines = ferplus_path.read_bytes().splitlines(keepends=True)
    ferplus_path.write_bytes(b"".join(lines[:-1]))
    expected = (
        r"fer2013new\.csv: expected one FERPlus row per FER2013 row, in the same order; "
        r".*fer2013\.csv has 12 data rows and this file 11"
    )
    with pytest.raises(FerFormatError, match=expected):
        read_ferplus(fer_path, ferplus_path)


def test_usage_mismatch_lists_the_first_rows_and_the_count(tmp_path):
    rows = ff.fer2013_rows({"Training": 6, "PublicTest": 3, "PrivateTest": 3}, seed=5)
    shifted = ["Training"] * 2 + ["PublicTest"] * 4 + ["PrivateTest"] * 6  # 7 rows disagree
    fer_path, ferplus_path, _ = _joined_files(tmp_path, [CLEAR] * 12, usages=shifted)
    assert sum(a != b for a, b in zip(rows.usages, shifted)) == 7
    with pytest.raises(FerFormatError) as info:
        read_ferplus(fer_path, ferplus_path)
    message = str(info.value)
    assert message.startswith(f"{ferplus_path}: expected the same Usage as {fer_path} in every row")
    assert (
        "7 data row(s) differ, first: 3 (Training vs PublicTest), 4 (Training vs PublicTest), "
        "5 (Training vs PublicTest), 6 (Training vs PublicTest), 7 (PublicTest vs PrivateTest)"
    ) in message
    assert "8 (" not in message


def test_read_ferplus_checks_the_mode_before_reading(tmp_path):
    with pytest.raises(ValueError, match="label_mode must be one of"):
        read_ferplus(tmp_path / "missing.csv", tmp_path / "missing_too.csv", "votes")


# --- image transforms ----------------------------------------------------------------------------


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


def test_to_rgb_repeats_the_grey_channel():
    images = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48, 1)
    rgb = to_rgb(images)
    assert rgb.shape == (2, 48, 48, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], images[..., 0])
    assert to_rgb(rgb) is rgb
    with pytest.raises(ValueError, match="images must have shape"):
        to_rgb(np.zeros((2, 48, 48, 2), np.uint8))


def test_error_messages_never_pass_silently_for_a_valid_looking_row():
    # A row whose pixel count is right but one value is not a number must fail, not decode.
    rows = ff.fer2013_rows()
    values = _pixel_text(rows, 0)
    values[100] = "1x2"
    values.pop()  # keep the space count at 2,303
    with pytest.raises(FerFormatError, match=r"pixel 101 is '1x2'"):
        _parse(_bad_pixels(rows, 0, " ".join(values)))
