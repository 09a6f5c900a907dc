"""Tests for the Tiny ImageNet-200 zip reader, on zips in the exact official layout."""

from __future__ import annotations

import warnings
import zipfile

import cv2
import numpy as np
import pytest
import tiny_imagenet_files as tf
from parsed_arrays import assert_same

from convbench.data.archives import ArchiveFormatError, UnsafeArchiveError
from convbench.data.tiny_imagenet import (
    NUM_CLASSES,
    ROOT,
    SOURCE_SIZE,
    TRAIN_PER_CLASS,
    VAL_IMAGES,
    CorruptImageError,
    decode_image,
    parse_words,
    read_tiny_imagenet,
)

KEYS = {"train_images", "train_labels", "test_images", "test_labels", "class_names", "wnids", "skipped"}
SMALL = {"expected_classes": 3, "expected_per_class": 4, "expected_val": 6, "progressbar": False}
ANNOTATIONS = f"{ROOT}/val/val_annotations.txt"


def _read(archive, image_size=32, **overrides):
    return read_tiny_imagenet(archive, image_size, **{**SMALL, **overrides})


def _without(*names):
    return lambda members: {name: data for name, data in members.items() if name not in names}


def _replace(name, data):
    return lambda members: {**members, name: data}


def _train(wnid, n):
    return f"{ROOT}/train/{wnid}/images/{wnid}_{n}.JPEG"


@pytest.fixture
def archive(tmp_path):
    return tmp_path / "tiny-imagenet-200.zip"


# --- format facts ---------------------------------------------------------------------------------


def test_format_facts_match_the_official_zip():
    assert ROOT == "tiny-imagenet-200"
    assert (NUM_CLASSES, TRAIN_PER_CLASS, VAL_IMAGES, SOURCE_SIZE) == (200, 500, 10_000, 64)


# --- exact round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64, 16])
def test_roundtrip_is_exact(archive, image_size):
    expected = tf.make_tiny_imagenet_zip(archive, image_size=image_size)
    result = _read(archive, image_size)
    assert_same(result, expected, KEYS)
    assert result["train_images"].shape == (12, image_size, image_size, 3)
    assert result["test_images"].shape == (6, image_size, image_size, 3)
    assert result["train_images"].flags.c_contiguous


def test_red_stays_red(archive):
    # OpenCV decodes to BGR by default; a reader that forgets to convert returns blue here.
    tf.make_tiny_imagenet_zip(archive)
    for image_size in (64, 32):
        red = _read(archive, image_size)["train_images"][0].astype(int)
        assert (red[:, :, 0] >= 250).all() and (red[:, :, 1:] <= 5).all(), image_size


def test_grayscale_jpeg_becomes_three_equal_channels(archive):
    expected = tf.make_tiny_imagenet_zip(archive, image_size=64)
    jpeg = expected["jpegs"][tf.GRAY_MEMBER]
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2  # a 1-channel JPEG
    index = tf.GRAY_CLASS * 4 + tf.GRAY_INDEX
    gray = _read(archive, 64)["train_images"][index]
    assert gray.shape == (64, 64, 3)
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 1])
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 2])
    np.testing.assert_array_equal(gray[:, :, 0], cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE))


def test_downscaling_is_inter_area_of_the_decoded_image(archive):
    tf.make_tiny_imagenet_zip(archive)
    full = _read(archive, 64)
    small = _read(archive, 32)
    for split in ("train_images", "test_images"):
        resized = np.stack([cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA) for image in full[split]])
        np.testing.assert_array_equal(small[split], resized)
        # INTER_AREA by a factor of 2 is the mean of each 2x2 block (up to rounding).
        blocks = full[split].reshape(-1, 32, 2, 32, 2, 3).astype(float).mean(axis=(2, 4))
        assert np.abs(small[split] - blocks).max() <= 0.5 + 1e-9


def test_labels_follow_wnids_txt_order_and_val_annotations(archive):
    expected = tf.make_tiny_imagenet_zip(archive)
    result = _read(archive)
    assert tuple(sorted(tf.WNIDS)) != tf.WNIDS  # not alphabetical: the file's order must be used
    assert result["wnids"] == list(tf.WNIDS)
    np.testing.assert_array_equal(result["train_labels"], np.repeat(np.arange(3), 4))
    assert result["class_names"] == tf.CLASS_NAMES == ["Egyptian cat", "reel", "goldfish"]
    with zipfile.ZipFile(archive) as zf:
        annotations = dict(line.split("\t")[:2] for line in zf.read(ANNOTATIONS).decode().splitlines())
    assert [tf.WNIDS[label] for label in result["test_labels"]] == [annotations[f"val_{n}.JPEG"] for n in range(6)]
    np.testing.assert_array_equal(result["test_labels"], expected["test_labels"])


def test_images_are_ordered_by_number_whatever_the_zip_order(archive):
    # 12 per class: by name, _10 and _11 would come before _2. The zip lists members backwards.
    expected = tf.make_tiny_imagenet_zip(archive, per_class=12, val=12, mutate=lambda m: dict(reversed(m.items())))
    result = _read(archive, expected_per_class=12, expected_val=12)
    assert_same(result, expected, KEYS)


def test_no_validation_images_at_all(archive):
    expected = tf.make_tiny_imagenet_zip(archive, val=0)
    result = _read(archive, expected_val=0)
    assert result["test_images"].shape == (0, 32, 32, 3)
    assert_same(result, expected, KEYS)


def test_progress_bar_on_stderr(archive, capsys):
    tf.make_tiny_imagenet_zip(archive)
    _read(archive, progressbar=True)
    err = capsys.readouterr().err
    assert "Tiny ImageNet train" in err and "Tiny ImageNet test" in err


# --- class names from words.txt -------------------------------------------------------------------


def test_shared_first_names_get_their_wnid():
    words = b"n00000001\tcrane, bird\nn00000002\tcrane, machine\nn00000003\tdog\n"
    names = parse_words(words, ["n00000002", "n00000003", "n00000001"], source="words.txt")
    assert names == ["crane (n00000002)", "dog", "crane (n00000001)"]


def test_words_without_a_line_for_a_class(archive):
    words = "".join(f"{wnid}\t{names}\n" for wnid, names in tf.WORDS.items() if wnid != "n04067472").encode()
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(f"{ROOT}/words.txt", words))
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    message = str(info.value)
    assert f"{archive}, member '{ROOT}/words.txt'" in message
    assert "expected a line for every wnid of wnids.txt, found none for n04067472" in message


def test_words_line_without_a_tab(archive):
    words = b"n00001740\tentity\nn01443537 goldfish\nn02124075\tEgyptian cat\nn04067472\treel\n"
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(f"{ROOT}/words.txt", words))
    problem = r"words\.txt': line 2: expected 'wnid<TAB>name, name, \.\.\.', found 'n01443537 goldfish'"
    with pytest.raises(ArchiveFormatError, match=problem):
        _read(archive)


def test_words_line_with_a_tab_but_no_name(archive):
    with pytest.raises(ArchiveFormatError, match=r"line 1: expected 'wnid<TAB>name"):
        parse_words(b"n00000001\t\n", ["n00000001"], source="words.txt")


# --- wnids.txt --------------------------------------------------------------------------------------


def test_default_expected_counts_are_the_official_ones(archive):
    tf.make_tiny_imagenet_zip(archive)
    with pytest.raises(ArchiveFormatError, match=r"wnids\.txt': expected 200 wnids, found 3"):
        read_tiny_imagenet(archive, progressbar=False)
    with pytest.raises(ArchiveFormatError, match="expected 500 training images per class"):
        read_tiny_imagenet(archive, expected_classes=3, progressbar=False)
    with pytest.raises(ArchiveFormatError, match="expected 10,000 validation images, found 6"):
        read_tiny_imagenet(archive, expected_classes=3, expected_per_class=4, progressbar=False)


def test_counts_none_skip_the_checks(archive):
    expected = tf.make_tiny_imagenet_zip(archive)
    unchecked = {"expected_classes": None, "expected_per_class": None, "expected_val": None, "progressbar": False}
    assert_same(read_tiny_imagenet(archive, **unchecked), expected, KEYS)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"n02124075\nn04067472\nn02124075\n", r"line 3: wnid 'n02124075' occurs twice \(also line 1\)"),
        (b"n02124075\n<html>\n", r"line 2: expected a wnid such as 'n01443537', found '<html>'"),
        (b"n02124075\n\xff\xfe\n", "expected UTF-8 text"),
    ],
    ids=["duplicate", "not-a-wnid", "not-utf8"],
)
def test_malformed_wnids_txt(archive, text, problem):
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(f"{ROOT}/wnids.txt", text))
    with pytest.raises(ArchiveFormatError, match=problem) as info:
        _read(archive)
    assert f"member '{ROOT}/wnids.txt'" in str(info.value)


@pytest.mark.parametrize("name", ["wnids.txt", "words.txt", "val/val_annotations.txt"])
def test_missing_text_member_is_named(archive, name):
    tf.make_tiny_imagenet_zip(archive, mutate=_without(f"{ROOT}/{name}"))
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    message = str(info.value)
    assert message.startswith(f"{archive}: ")
    assert f"expected member '{ROOT}/{name}', but it is missing" in message


# --- class folders and counts -----------------------------------------------------------------------


def test_missing_class_folder(archive):
    gone = [_train("n04067472", n) for n in range(4)]
    tf.make_tiny_imagenet_zip(archive, mutate=_without(*gone))
    problem = (
        r"expected a folder tiny-imagenet-200/train/<wnid>/images/ with images for every wnid, "
        r"found none for n04067472$"
    )
    with pytest.raises(ArchiveFormatError, match=problem):
        _read(archive)


def test_class_folder_not_in_wnids(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=lambda m: {**m, _train("n04540053", 0): m[_train("n01443537", 0)]})
    problem = "expected train/ folders only for the wnids of wnids.txt, found n04540053"
    with pytest.raises(ArchiveFormatError, match=problem):
        _read(archive)


def test_class_with_too_few_images(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_without(_train("n01443537", 3)))
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    assert str(archive) in str(info.value)
    assert "expected 4 training images per class, found other counts for n01443537: 3" in str(info.value)


def test_non_jpeg_file_in_an_images_folder(archive):
    stray = f"{ROOT}/train/n01443537/images/Thumbs.db"
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(stray, b"\0" * 10))
    with pytest.raises(ArchiveFormatError, match=rf"member '{stray}': expected only \.JPEG files in images folders"):
        _read(archive)


def test_duplicate_member_is_refused(archive):
    tf.make_tiny_imagenet_zip(archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        with zipfile.ZipFile(archive, "a") as zf:
            zf.writestr(_train("n01443537", 1), b"second")
    with pytest.raises(ArchiveFormatError, match=r"n01443537_1\.JPEG': expected one member of this name, found it tw"):
        _read(archive)


# --- validation annotations ----------------------------------------------------------------------------


def _edit_annotations(edit):
    def mutate(members):
        lines = members[ANNOTATIONS].decode().splitlines()
        return {**members, ANNOTATIONS: ("\n".join(edit(lines)) + "\n").encode()}

    return mutate


def test_annotation_with_an_unknown_wnid(archive):
    unknown_third = _edit_annotations(lambda lines: [*lines[:2], lines[2].replace("n0", "n9", 1), *lines[3:]])
    tf.make_tiny_imagenet_zip(archive, mutate=unknown_third)
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    message = str(info.value)
    assert f"member '{ANNOTATIONS}'" in message
    assert "line 3: expected a wnid of wnids.txt for 'val_2.JPEG', found 'n9" in message


def test_annotation_line_without_fields(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_edit_annotations(lambda lines: [*lines, "val_99.JPEG"]))
    with pytest.raises(ArchiveFormatError, match=r"line 7: expected 'file<TAB>wnid<TAB>box', found 'val_99.JPEG'"):
        _read(archive)


def test_annotated_twice(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_edit_annotations(lambda lines: [*lines, lines[0]]))
    with pytest.raises(ArchiveFormatError, match=r"line 7: 'val_0.JPEG' is annotated twice \(also line 1\)"):
        _read(archive)


def test_annotated_image_missing(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_without(f"{ROOT}/val/images/val_4.JPEG"))
    with pytest.raises(ArchiveFormatError, match=r"for every line of val_annotations.txt, found none for val_4.JPEG"):
        _read(archive)


def test_image_without_annotation(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_edit_annotations(lambda lines: lines[:5]))
    problem = (
        r"expected a line of val_annotations.txt for every image in tiny-imagenet-200/val/images/, "
        r"found none for val_5\.JPEG$"
    )
    with pytest.raises(ArchiveFormatError, match=problem):
        _read(archive)


# --- corrupt images: counted skips ------------------------------------------------------------------------


def _corrupt_images(jpegs):
    """Four broken images: truncated, not a JPEG, a JPEG header then garbage, and a JPEG of the wrong size."""
    small = tf.encode_jpeg(np.full((32, 32, 3), 128, np.uint8))
    return {
        _train("n02124075", 1): (jpegs[_train("n02124075", 1)][: len(jpegs[_train("n02124075", 1)]) // 2], "truncated"),
        _train("n01443537", 3): (b"<html>404</html>", "(starting with bytes ff d8), found bytes 3c 68 74 6d"),
        f"{ROOT}/val/images/val_2.JPEG": (b"\xff\xd8" + bytes(range(256)), "OpenCV could not decode it"),
        _train("n04067472", 0): (small, "expected a 64x64 image, found 32x32"),
    }


def test_corrupt_images_beyond_max_corrupt_are_an_error_listing_them_all(archive):
    jpegs = tf.make_tiny_imagenet_zip(archive)["jpegs"]
    broken = _corrupt_images(jpegs)
    tf.make_tiny_imagenet_zip(archive, mutate=lambda m: {**m, **{name: data for name, (data, _) in broken.items()}})
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive, max_corrupt=3)
    message = str(info.value)
    assert message.startswith(f"{archive}: expected at most max_corrupt=3 undecodable images, found 4: ")
    for name, (_, reason) in broken.items():
        assert repr(name) in message and reason in message
    assert "Set max_corrupt to 4 or more to skip them" in message


def test_corrupt_images_within_max_corrupt_are_skipped_and_reported(archive):
    expected = tf.make_tiny_imagenet_zip(archive)
    broken = _corrupt_images(expected["jpegs"])
    tf.make_tiny_imagenet_zip(archive, mutate=lambda m: {**m, **{name: data for name, (data, _) in broken.items()}})
    result = _read(archive, max_corrupt=4)
    assert [(item["split"], item["member"]) for item in result["skipped"]] == [
        ("train", _train("n02124075", 1)),
        ("train", _train("n04067472", 0)),
        ("train", _train("n01443537", 3)),
        ("test", f"{ROOT}/val/images/val_2.JPEG"),
    ]
    for item in result["skipped"]:
        assert broken[item["member"]][1] in item["reason"]
    keep_train = [i for i in range(12) if i not in (1, 4, 11)]
    keep_test = [i for i in range(6) if i != 2]
    np.testing.assert_array_equal(result["train_images"], expected["train_images"][keep_train])
    np.testing.assert_array_equal(result["train_labels"], expected["train_labels"][keep_train])
    np.testing.assert_array_equal(result["test_images"], expected["test_images"][keep_test])
    np.testing.assert_array_equal(result["test_labels"], expected["test_labels"][keep_test])


def test_one_corrupt_image_with_the_default_max_corrupt_is_an_error(archive):
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(_train("n04067472", 2), b"\xff\xd8\xff\xe0garbage"))
    problem = r"max_corrupt=0 undecodable images, found 1: 'tiny-imagenet-200/train/n04067472/images/n04067472_2\.JPEG'"
    with pytest.raises(ArchiveFormatError, match=problem):
        _read(archive)


def test_decode_image_reasons():
    rng = np.random.default_rng(0)
    jpeg = tf.encode_jpeg(tf.smooth_image(rng))
    assert decode_image(jpeg).shape == (32, 32, 3)
    assert decode_image(jpeg, 64).dtype == np.uint8
    with pytest.raises(CorruptImageError, match="the JPEG is truncated"):
        decode_image(jpeg[:-2])  # only the end-of-image marker is missing
    with pytest.raises(CorruptImageError, match="found bytes none"):
        decode_image(b"")


# --- damaged and unsafe zips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_zip(archive, fraction):
    tf.make_tiny_imagenet_zip(archive)
    tf.truncate(archive, fraction)
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    assert str(archive) in str(info.value)
    assert "expected a complete zip archive, but it is not one or is truncated" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"<html><body>404 Not Found</body></html>\n"], ids=["empty", "html"])
def test_file_that_is_not_a_zip(archive, content):
    archive.write_bytes(content)
    with pytest.raises(ArchiveFormatError, match="expected a complete zip archive"):
        _read(archive)


@pytest.mark.parametrize("member", [_train("n04067472", 1), f"{ROOT}/words.txt"])
def test_corrupt_member_data_names_the_member(archive, member):
    tf.make_tiny_imagenet_zip(archive)
    tf.corrupt_member_data(archive, member)
    with pytest.raises(ArchiveFormatError) as info:
        _read(archive)
    message = str(info.value)
    assert message.startswith(f"{archive}, member {member!r}: ")
    assert "expected the member's complete, intact data, but the archive is corrupt" in message


def test_missing_zip_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        _read(tmp_path / "nothing.zip")


@pytest.mark.parametrize(
    "name",
    ["../evil", f"{ROOT}/../../evil.JPEG", "/tmp/convbench_evil_absolute", f"{ROOT}\\..\\evil", "C:/evil"],
)
def test_member_escaping_the_folder_is_refused(archive, name):
    tf.make_tiny_imagenet_zip(archive, mutate=_replace(name, b"pwned"))
    with pytest.raises(UnsafeArchiveError) as info:
        _read(archive)
    assert str(archive) in str(info.value) and repr(name) in str(info.value)


def test_symlink_in_place_of_an_image_is_refused(archive):
    name = _train("n01443537", 2)
    tf.make_tiny_imagenet_zip(archive, mutate=_without(name))
    tf.append_symlink(archive, name, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=rf"member '{name}': expected a regular file, found a symbolic link"):
        _read(archive)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"image_size": 0}, "image_size must be 1-64"),
        ({"image_size": 65}, "Received: image_size=65"),
        ({"max_corrupt": -1}, "max_corrupt must be 0 or more"),
    ],
)
def test_bad_arguments_are_usage_errors(archive, kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        read_tiny_imagenet(archive, **kwargs)
