"""Reading a folder of images with one subfolder per class: names, depths, formats, colours, stray and
broken files, links, and the test split carved when there is no test/."""

import os

import cv2
import numpy as np
import pytest
from image_folders import CLASS_COLOURS, class_image, make_user_folder, write_image
from test_serving import png_header_declaring

from convbench.data.image_folder import ImageFolderError, read_image_folder
from convbench.pipelines.ingestion.nodes import carve_test_split, parse_image_folder


def test_every_image_is_read_whatever_its_name_depth_format_or_colour(tmp_path):
    counts = make_user_folder(tmp_path, per_class=12)
    parsed = read_image_folder(tmp_path, image_size=32, channels=3)
    assert parsed["class_names"] == ["cat", "dog", "frog"]  # the folder names, sorted
    assert parsed["train_images"].shape == (25, 32, 32, 3) and parsed["train_images"].dtype == np.uint8
    assert list(np.bincount(parsed["train_labels"])) == [counts["cat"], counts["dog"], counts["frog"]]
    assert not parsed["has_test_folder"] and len(parsed["test_images"]) == 0
    used = parsed["manifest"][parsed["manifest"]["status"] == "used"]
    assert {"train/cat/with space (1).png", "train/cat/ünïcødé-猫.jpg", "train/dog/UPPER.PNG"} <= set(used["file"])
    assert "train/dog/nested/level 1/dog_007.jpg" in set(used["file"])


def test_colours_arrive_as_rgb_and_grey_images_are_repeated_to_three_channels(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    parsed = read_image_folder(tmp_path, image_size=16)
    manifest = parsed["manifest"][parsed["manifest"]["status"] == "used"].reset_index(drop=True)
    first_cat = parsed["train_images"][manifest.index[manifest["file"] == "train/cat/with space (1).png"][0]]
    np.testing.assert_allclose(first_cat.reshape(-1, 3).mean(axis=0), CLASS_COLOURS["cat"], atol=3)
    grey = parsed["train_images"][manifest.index[manifest["file"] == "train/cat/UPPER.PNG"][0]]
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_colour_images_become_grey_for_one_channel(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    parsed = read_image_folder(tmp_path, image_size=[20, 24], channels=1)
    assert parsed["train_images"].shape[1:] == (20, 24, 1)


def test_images_are_resized_with_inter_area(tmp_path):
    checker = ((np.indices((96, 96)).sum(axis=0) % 2) * 255).astype(np.uint8)
    for class_name in ("a", "b"):
        write_image(tmp_path / "train" / class_name / "checker.png", checker)
    parsed = read_image_folder(tmp_path, image_size=32, channels=1)
    expected = cv2.resize(checker, (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(parsed["train_images"][0, ..., 0], expected)
    assert len(np.unique(expected)) == 2 and 0 < expected.min() < 255  # 3x3 means, not nearest pixels


def test_stray_files_are_left_out_named_in_the_log_and_the_manifest(tmp_path, caplog):
    make_user_folder(tmp_path, per_class=8)
    with caplog.at_level("WARNING"):
        parsed = read_image_folder(tmp_path)
    assert "left out 1 file(s) that are not PNG/JPEG/BMP: train/cat/notes.txt" in caplog.text
    manifest = parsed["manifest"].set_index("file")
    assert manifest.loc["train/cat/notes.txt", "status"] == "not_an_image"
    assert "train/dog/.DS_Store" not in manifest.index  # hidden files: skipped quietly


def broken_files(root):
    (root / "train" / "cat" / "truncated.png").write_bytes((root / "train" / "cat" / "UPPER.PNG").read_bytes()[:40])
    (root / "train" / "dog" / "not really.jpg").write_bytes(b"this is text, not a JPEG")


def test_corrupt_files_stop_the_read_beyond_max_corrupt_and_are_all_named(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    broken_files(tmp_path)
    with pytest.raises(ImageFolderError) as raised:
        read_image_folder(tmp_path, max_corrupt=1)
    message = str(raised.value)
    assert "2 file(s) could not be read as images, more than max_corrupt=1" in message
    assert "train/cat/truncated.png" in message and "train/dog/not really.jpg" in message
    assert "max_corrupt: 2" in message


def test_corrupt_files_within_max_corrupt_are_skipped_and_each_logged(tmp_path, caplog):
    make_user_folder(tmp_path, per_class=8)
    broken_files(tmp_path)
    with caplog.at_level("WARNING"):
        parsed = read_image_folder(tmp_path, max_corrupt=2)
    assert len(parsed["train_images"]) == 17
    assert caplog.text.count("could not be read as an image") == 2
    manifest = parsed["manifest"].set_index("file")
    assert manifest.loc["train/dog/not really.jpg", "status"] == "corrupt"
    assert "could not decode" in manifest.loc["train/dog/not really.jpg", "reason"]


def test_links_inside_the_folder_are_followed(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    os.symlink(tmp_path / "train" / "cat" / "UPPER.PNG", tmp_path / "train" / "dog" / "linked.png")
    os.symlink(tmp_path / "train" / "cat" / "nested", tmp_path / "train" / "dog" / "linked folder")
    parsed = read_image_folder(tmp_path)
    assert list(np.bincount(parsed["train_labels"])) == [8, 8 + 1 + 2, 1]


@pytest.mark.parametrize("link", ["file", "folder", "class"])
def test_a_link_pointing_outside_the_folder_is_refused(tmp_path, link):
    outside = tmp_path / "elsewhere"
    write_image(outside / "secret.png", class_image("cat", np.random.default_rng(0)))
    root = tmp_path / "dataset"
    make_user_folder(root, per_class=8)
    target, name = {
        "file": (outside / "secret.png", root / "train" / "cat" / "secret.png"),
        "folder": (outside, root / "train" / "cat" / "more"),
        "class": (outside, root / "train" / "bird"),
    }[link]
    os.symlink(target, name)
    with pytest.raises(ImageFolderError, match="outside the dataset folder") as raised:
        read_image_folder(root)
    assert str(name) in str(raised.value)


def test_a_test_folder_becomes_the_test_split(tmp_path):
    make_user_folder(tmp_path, per_class=8, with_test=True)
    parsed = read_image_folder(tmp_path)
    assert parsed["has_test_folder"] and list(np.bincount(parsed["test_labels"])) == [3, 3, 1]
    assert list(np.bincount(parsed["train_labels"])) == [8, 8, 1]


def blank(path):
    return write_image(path, np.zeros((4, 4), np.uint8))


def one_class(root):
    blank(root / "train" / "only" / "a.png")


def unknown_test_class(root):
    for name in ("a", "b"):
        blank(root / "train" / name / "a.png")
    blank(root / "test" / "c" / "a.png")


def class_without_images(root):
    blank(root / "train" / "a" / "a.png")
    (root / "train" / "b").mkdir(parents=True)
    (root / "train" / "b" / "x.txt").write_text("x")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "is not a folder"),
        (one_class, "at least two"),
        (unknown_test_class, r"class folder\(s\) \['c'\] that train/ has not"),
        (class_without_images, r"class folder\(s\) \['b'\] hold no readable"),
    ],
    ids=["no train folder", "one class", "unknown test class", "class without images"],
)
def test_a_folder_that_is_not_a_dataset_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ImageFolderError, match=message):
        read_image_folder(tmp_path)


def test_without_test_folder_a_seeded_stratified_test_split_is_carved(tmp_path):
    make_user_folder(tmp_path, per_class=20)
    parsed = parse_image_folder(str(tmp_path), 32, 3, test_size=0.25, seed=7, max_corrupt=0)
    assert list(np.bincount(parsed["test_labels"], minlength=3)) == [5, 5, 0]  # the one frog stays in training
    assert list(np.bincount(parsed["train_labels"])) == [15, 15, 1]
    again = parse_image_folder(str(tmp_path), 32, 3, test_size=0.25, seed=7, max_corrupt=0)
    np.testing.assert_array_equal(again["test_images"], parsed["test_images"])
    other = parse_image_folder(str(tmp_path), 32, 3, test_size=0.25, seed=8, max_corrupt=0)
    assert not np.array_equal(other["test_images"], parsed["test_images"])
    manifest = parsed["image_folder_manifest"]
    carved = manifest[manifest["split"] == "test"]
    assert len(carved) == 10 and carved["reason"].str.contains("carved from train/").all()


def test_a_carved_test_split_takes_a_count_as_well_as_a_share():
    labels = np.repeat([0, 1, 2], [10, 6, 1])
    train, test = carve_test_split(labels, 4, seed=0)
    assert len(test) == 4 and set(train) | set(test) == set(range(17)) and not set(train) & set(test)
    assert 16 not in test


def test_an_image_declaring_too_many_pixels_is_corrupt_without_being_decoded(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    (tmp_path / "train" / "cat" / "bomb.png").write_bytes(png_header_declaring(20_000, 20_000))
    parsed = read_image_folder(tmp_path, max_corrupt=1)
    reason = parsed["manifest"].set_index("file").loc["train/cat/bomb.png", "reason"]
    assert "declares 20,000 x 20,000 pixels" in reason


def test_a_link_back_to_a_folder_already_read_is_not_followed_again(tmp_path):
    make_user_folder(tmp_path, per_class=8)
    os.symlink(tmp_path / "train" / "cat", tmp_path / "train" / "cat" / "nested" / "loop")
    parsed = read_image_folder(tmp_path)
    assert list(np.bincount(parsed["train_labels"])) == [8, 8, 1]
