import numpy as np
import pytest

from convbench.pipelines.preprocessing.nodes import (
    build_dataset_card,
    channel_statistics,
    split_dataset,
    stratified_sample,
)

CLASSES = 10


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    train = np.repeat(np.arange(CLASSES), 500)  # balanced like CIFAR-10, 500 per class
    rng.shuffle(train)
    test = np.repeat(np.arange(CLASSES), 100)
    return train, test


def test_validation_split_is_stratified_disjoint_and_complete(labels):
    train_labels, test_labels = labels
    train, val, test = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 1})
    assert len(val) == 500 and len(train) == 4500
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(5000))
    np.testing.assert_array_equal(np.bincount(train_labels[val]), [50] * CLASSES)
    np.testing.assert_array_equal(test, np.arange(1000)), "the official test set stays whole"


def test_same_seed_same_split_and_another_seed_another(labels):
    train_labels, test_labels = labels
    first = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 3})
    again = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 3})
    other = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 4})
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


def test_subsets_are_stratified_and_drawn_from_their_own_split(labels):
    train_labels, test_labels = labels
    split = {"val_size": 500, "seed": 0, "subset": {"train": 100, "val": 50, "test": 30}}
    train, val, test = split_dataset(train_labels, test_labels, split)
    full_train, full_val, _ = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 0})
    assert (len(train), len(val), len(test)) == (100, 50, 30)
    assert set(train) <= set(full_train) and set(val) <= set(full_val)
    np.testing.assert_array_equal(np.bincount(train_labels[train]), [10] * CLASSES)
    np.testing.assert_array_equal(np.bincount(test_labels[test]), [3] * CLASSES)


def test_uneven_classes_keep_their_shares_and_the_exact_size():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    chosen = stratified_sample(labels, 11, np.random.default_rng(0))
    assert len(chosen) == 11 and len(set(chosen)) == 11
    assert list(np.bincount(labels[chosen])) in ([8, 2, 1], [7, 3, 1], [7, 2, 2])


def test_a_subset_larger_than_its_split_keeps_the_split_whole_and_says_so(labels, caplog):
    train_labels, test_labels = labels
    whole = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 0})
    with caplog.at_level("INFO"):
        capped = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 0, "subset": {"val": 600}})
    np.testing.assert_array_equal(capped[1], whole[1])
    assert "subset.val=600: the val split has 500 images, all kept" in caplog.text


def test_a_validation_share_is_a_stratified_fraction_of_the_training_set(labels):
    train_labels, test_labels = labels
    _, val, _ = split_dataset(train_labels, test_labels, {"val_size": 0.1, "seed": 0})
    assert len(val) == round(0.1 * len(train_labels))


def test_too_large_validation_is_a_clear_error(labels):
    train_labels, test_labels = labels
    with pytest.raises(ValueError, match="val_size=5000 leaves no training images"):
        split_dataset(train_labels, test_labels, {"val_size": 5000, "seed": 0})
    with pytest.raises(ValueError, match="val_size must be a share"):
        split_dataset(train_labels, test_labels, {"val_size": 1.5, "seed": 0})


def test_channel_statistics_use_the_training_split_only_and_are_exact():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9000, 4, 4, 3), dtype=np.uint8)
    images[8000:] = 255  # "validation" images that must not leak into the statistics
    train = np.arange(8000)
    stats = channel_statistics(images, train)
    reference = images[:8000].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], reference.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], reference.std(axis=0), rtol=1e-9)
    assert stats["images"] == 8000 and stats["split"] == "train"


def test_dataset_card_counts_every_split_and_renders_markdown(tmp_path, labels):
    train_labels, test_labels = labels
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"x" * 1234)
    md5 = "md5:" + __import__("hashlib").md5(b"x" * 1234).hexdigest()
    train, val, test = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 0})
    names = [f"class{i}" for i in range(CLASSES)]
    source = {"url": "https://example.org/c.tgz", "known_hash": md5, "destination": str(archive)}
    stats = {"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]}
    images = np.zeros((5000, 32, 32, 3), dtype=np.uint8)
    card, markdown = build_dataset_card(source, images, train_labels, test_labels, train, val, test, names, stats)
    assert card["split_sizes"] == {"train": 4500, "val": 500, "test": 1000}
    assert card["class_counts"]["val"] == [50] * CLASSES
    assert card["class_counts"]["train"] == [450] * CLASSES
    assert card["sources"] == [
        {"name": "archive", "url": source["url"], "file": archive.name, "bytes": 1234, "checksum": md5}
    ]
    assert card["image_shape"] == [32, 32, 3]
    assert "| class0 | 450 | 50 | 100 |" in markdown
    assert md5 in markdown and "1,234 bytes" in markdown
    archive.write_bytes(b"y" * 1234)  # the card reports the file as it is, not the configured checksum
    card, _ = build_dataset_card(source, images, train_labels, test_labels, train, val, test, names, stats)
    assert card["sources"][0]["checksum"] != md5 and card["sources"][0]["checksum"].startswith("md5:")


def test_dataset_card_lists_every_raw_file_of_a_multi_file_dataset(tmp_path, labels):
    train_labels, test_labels = labels
    sources = {}
    for name in ("train_images", "train_labels"):
        path = tmp_path / f"{name}.gz"
        path.write_bytes(name.encode())
        sources[name] = {"url": f"https://example.org/{name}.gz", "known_hash": None, "destination": str(path)}
    train, val, test = split_dataset(train_labels, test_labels, {"val_size": 500, "seed": 0})
    images = np.zeros((5000, 28, 28, 1), dtype=np.uint8)
    card, markdown = build_dataset_card(
        sources,
        images,
        train_labels,
        test_labels,
        train,
        val,
        test,
        [str(i) for i in range(CLASSES)],
        {"mean": [1.0], "std": [2.0]},
    )
    assert [(s["name"], s["file"], s["bytes"]) for s in card["sources"]] == [
        ("train_images", "train_images.gz", 12),
        ("train_labels", "train_labels.gz", 12),
    ]
    assert all(s["checksum"].startswith("sha256:") for s in card["sources"])
    assert markdown.startswith("# Dataset card: train_images.gz, train_labels.gz")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: {**s, "mean": [s["mean"][0] + 1.0, *s["mean"][1:]]}, "was edited after the preprocessing wrote it"),
        (lambda s: {**s, "std": [0.0, *s["std"][1:]]}, "expected means in \\[0, 255\\] and stds > 0"),
        (lambda s: {**s, "mean": s["mean"][:2]}, "has 2 means and 3 stds; the images have 3 channels"),
        (lambda s: {"average": s["mean"]}, "does not hold per-channel `mean` and `std`"),
        (lambda s: [1, 2, 3], "does not hold per-channel `mean` and `std`"),
    ],
)
def test_an_edited_normalization_file_stops_training_naming_the_file_and_the_fix(edit, message):
    from convbench.normalization import check_normalization
    from convbench.pipelines.training.nodes import build_model

    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    statistics = channel_statistics(images, np.arange(10))
    check_normalization(statistics, 3, "normalization.json")  # as written: accepted
    with pytest.raises(ValueError, match=message) as error:
        build_model(images, np.arange(10), ["a", "b"], edit(statistics), {"seed": 0}, "mlp", "cifar10")
    assert "05_model_input/cifar10/normalization.json" in str(error.value)
    assert "kedro run --pipelines=<dataset>_preprocessing" in str(error.value)
