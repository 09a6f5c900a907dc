"""FERPlus preprocessing: labels from crowd votes per `label_mode`, predefined splits, the card with drops."""

import re

import fer_files as ff
import numpy as np
import pandas as pd
import pytest

from convbench.data import fer2013, ferplus
from convbench.pipelines.ingestion.nodes import parse_ferplus_files
from convbench.pipelines.preprocessing.nodes import (
    build_crowd_label_card,
    channel_statistics,
    label_crowd_votes,
    predefined_split,
)


def _drops(**counts: int) -> dict[str, int]:
    """Return a drop-count dict: every reason, zero unless given."""
    return {reason: counts.get(reason, 0) for reason in ferplus.DROP_REASONS}


REAL_TRAIN = {  # label mode -> (Training rows kept, Training rows dropped per reason)
    "majority": (25060, _drops(no_image_name=148, unknown_wins=76, not_face_wins=2, ambiguous=3423)),
    "probability": (27956, _drops(no_image_name=148, unknown_wins=170, not_face_wins=2, ambiguous=433)),
    "crossentropy": (27956, _drops(no_image_name=148, unknown_wins=170, not_face_wins=2, ambiguous=433)),
    "multi_target": (27671, _drops(no_image_name=148, unknown_wins=120, not_face_wins=2, ambiguous=768)),
    "seed_distribution": (28559, _drops(no_image_name=148, no_votes=2)),
}
"""What each scheme keeps and drops of the 28,709 Training rows of the real fer2013new.csv."""
REAL_VAL = (3199, _drops(no_image_name=10, unknown_wins=13, ambiguous=367))
REAL_TEST = (3153, _drops(no_image_name=15, unknown_wins=10, not_face_wins=1, ambiguous=410))
"""What the majority scheme keeps and drops of the 3,589 PublicTest and 3,589 PrivateTest rows."""


@pytest.fixture(scope="module")
def real_annotations():
    """The real file's votes as the ingestion stores them, through a CSV round trip."""
    votes = ferplus.load_ferplus(ff.FERPLUS_SAMPLE)
    development = np.flatnonzero(votes.usage != fer2013.SPLITS.index("test"))
    test = np.flatnonzero(votes.usage == fer2013.SPLITS.index("test"))
    tables = []
    for rows in (development, test):
        text = ferplus.annotation_table(votes, rows).to_csv(index=False)
        tables.append(pd.read_csv(__import__("io").StringIO(text), keep_default_na=False))
    return tables


@pytest.mark.parametrize("mode", ferplus.LABEL_MODES)
def test_each_label_mode_labels_training_rows_and_majority_labels_validation_and_test(real_annotations, mode):
    train_annotations, test_annotations = real_annotations
    train_labels, test_labels, targets, drops, metrics = label_crowd_votes(train_annotations, test_annotations, mode)
    usage = train_annotations["Usage"].to_numpy()
    training, validation = usage == "Training", usage == "PublicTest"
    assert (train_labels[training] >= 0).sum() == REAL_TRAIN[mode][0]
    assert (train_labels[validation] >= 0).sum() == REAL_VAL[0] and (test_labels >= 0).sum() == REAL_TEST[0]
    assert train_labels.dtype == np.int64 and test_labels.dtype == np.int64
    kept = train_labels >= 0
    assert (targets[~kept] == 0).all() and targets.dtype == np.float32 and targets.shape == (len(usage), 8)
    assert set(np.unique(targets[kept & validation])) == {0.0, 1.0}, "validation targets are one-hot majority"
    np.testing.assert_array_equal(targets[kept & validation].argmax(axis=1), train_labels[kept & validation])
    trained = targets[kept & training]
    if mode == "multi_target":
        # A mask with a floor: the label (the most-voted target) is one of the targets.
        assert set(np.unique(trained)) == {np.float32(0.001), np.float32(1.0)}
        assert (trained[np.arange(len(trained)), train_labels[kept & training]] == 1.0).all()
    else:
        np.testing.assert_allclose(trained.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(trained.argmax(axis=1), train_labels[kept & training])
        if mode == "majority":
            assert set(np.unique(trained)) == {0.0, 1.0}
        else:
            assert (trained % 1 != 0).any(), "soft targets"
    # Drops: every mode's training row, then validation and test under majority; nothing lost.
    assert list(zip(drops["split"], drops["label_mode"])) == [
        *(("train", m) for m in ferplus.LABEL_MODES),
        ("val", "majority"),
        ("test", "majority"),
    ]
    reasons = list(ferplus.DROP_REASONS)
    assert (drops[reasons].sum(axis=1) + drops["kept"] == drops["rows"]).all()
    assert list(drops.loc[drops["used"], "label_mode"]) == [mode, "majority", "majority"]
    used_train = drops[drops["used"]].iloc[0]
    assert metrics["kept.train"] == {"value": REAL_TRAIN[mode][0], "step": 0}
    assert all(metrics[f"dropped.train.{reason}"]["value"] == used_train[reason] for reason in reasons)
    assert metrics["dropped.test.no_image_name"]["value"] == 15


def test_drop_table_counts_every_real_row_once_per_mode_split_and_reason(real_annotations):
    *_, drops, metrics = label_crowd_votes(*real_annotations, "crossentropy")
    expected = [
        {"split": "train", "label_mode": mode, "used": mode == "crossentropy", "rows": 28709, **dropped, "kept": kept}
        for mode, (kept, dropped) in REAL_TRAIN.items()
    ]
    expected += [
        {"split": split, "label_mode": "majority", "used": True, "rows": 3589, **dropped, "kept": kept}
        for split, (kept, dropped) in (("val", REAL_VAL), ("test", REAL_TEST))
    ]
    assert drops.to_dict(orient="records") == expected
    assert list(drops.columns) == ["split", "label_mode", "used", "rows", *ferplus.DROP_REASONS, "kept"]
    assert metrics["dropped.test.not_face_wins"] == {"value": 1.0, "step": 0}
    assert metrics["kept.val"] == {"value": 3199.0, "step": 0}


CLEAR = (10, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SPLIT_VOTES = (4, 3, 3, 0, 0, 0, 0, 0, 0, 0)  # majority: ambiguous; probability: 0.4, 0.3, 0.3


@pytest.mark.parametrize("source", ["fer2013.csv", "fer2013.tar.gz"])
def test_placed_files_are_joined_row_by_row_then_labelled(tmp_path, source):
    rows = ff.fer2013_rows({"Training": 6, "PublicTest": 3, "PrivateTest": 3}, seed=5)
    votes = [CLEAR, SPLIT_VOTES, (0,) * 10, (0,) * 9 + (10,), (0, 9, 1, 0, 0, 0, 0, 0, 0, 0), CLEAR]  # Training
    votes += [SPLIT_VOTES, CLEAR, CLEAR]  # PublicTest
    votes += [CLEAR, (0, 0, 0, 0, 0, 0, 0, 0, 7, 3), (0, 0, 0, 10, 0, 0, 0, 0, 0, 0)]  # PrivateTest
    names = [f"fer{i:07d}.png" for i in range(12)]
    names[5] = ""  # FERPlus dropped this image; its votes do not matter
    csv_text = ff.fer2013_text(rows)
    fer_path = tmp_path / source
    if source == "fer2013.tar.gz":
        ff.write_fer2013_archive(fer_path, csv_text)
    else:
        fer_path.write_bytes(csv_text)
    ferplus_path = tmp_path / "fer2013new.csv"
    ferplus_path.write_bytes(ff.ferplus_text(list(zip(rows.usages, names, votes))))

    parsed = parse_ferplus_files(str(fer_path), str(ferplus_path), {"train": 6, "val": 3, "test": 3}, {})
    train_labels, test_labels, targets, drops, _ = label_crowd_votes(
        parsed["train_annotations"], parsed["test_annotations"], "probability"
    )

    np.testing.assert_array_equal(parsed["train_images"], rows.images[:9])
    np.testing.assert_array_equal(parsed["test_images"], rows.images[9:])
    assert parsed["train_images"].dtype == np.uint8
    assert list(parsed["test_annotations"]["row"]) == [9, 10, 11]
    # Training keeps rows 0, 1 and 4; PublicTest (majority) drops row 6, whose top class has 4 of 10 votes.
    assert train_labels.tolist() == [0, 0, -1, -1, 1, -1, -1, 0, 0]
    assert test_labels.tolist() == [0, -1, 3]
    np.testing.assert_allclose(targets[1], [0.4, 0.3, 0.3, 0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(targets[4], [0, 1, 0, 0, 0, 0, 0, 0])  # surprise's single vote is noise
    assert (targets[train_labels < 0] == 0).all()
    used = drops[drops["used"]].set_index("split")
    assert used.loc["train", list(ferplus.DROP_REASONS)].to_dict() == _drops(
        no_image_name=1, no_votes=1, not_face_wins=1
    )
    assert used.loc["val", list(ferplus.DROP_REASONS)].to_dict() == _drops(ambiguous=1)
    assert used.loc["test", list(ferplus.DROP_REASONS)].to_dict() == _drops(unknown_wins=1)
    assert used["kept"].to_dict() == {"train": 3, "val": 2, "test": 2}


def test_labels_agree_with_the_row_at_a_time_reference_rules(real_annotations):
    train_annotations, _ = real_annotations
    train_labels, _, targets, _, _ = label_crowd_votes(train_annotations, train_annotations.iloc[:0], "crossentropy")
    votes = train_annotations[list(ferplus.FERPLUS_VOTE_COLUMNS)].to_numpy()
    for row in range(0, len(votes), 997):  # every 997th row of the real file
        if train_annotations.loc[row, "Usage"] != "Training" or not train_annotations.loc[row, "Image name"]:
            continue
        _, expected, _ = ff.reference_label(votes[row], "crossentropy")
        if expected is None:
            assert train_labels[row] == -1, row
        else:
            np.testing.assert_allclose(targets[row], expected, rtol=1e-6, err_msg=str(row))


def test_unknown_label_mode_names_the_parameter(real_annotations):
    with pytest.raises(
        ValueError, match=r"preprocessing\.<dataset>\.label_mode must be one of majority, .*Received: 'soft'"
    ):
        label_crowd_votes(*real_annotations, "soft")


def test_predefined_split_follows_usage_and_leaves_dropped_images_out():
    annotations = pd.DataFrame({"Usage": ["Training"] * 6 + ["PublicTest"] * 3})
    train_labels = np.array([0, 1, -1, 2, 0, 1, 2, -1, 0])
    test_labels = np.array([1, -1, 0, 2])
    train, val, test = predefined_split(annotations, train_labels, test_labels, {"seed": 0, "subset": None})
    np.testing.assert_array_equal(train, [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(val, [6, 8])
    np.testing.assert_array_equal(test, [0, 2, 3])
    small_train, _, small_test = predefined_split(
        annotations, train_labels, test_labels, {"seed": 0, "subset": {"train": 3, "test": 2}}
    )
    assert len(small_train) == 3 and set(small_train) <= set(train) and len(small_test) == 2
    _, whole_val, _ = predefined_split(annotations, train_labels, test_labels, {"seed": 0, "subset": {"val": 5}})
    np.testing.assert_array_equal(whole_val, val)  # a subset larger than the split keeps it whole


@pytest.fixture
def placed_files(tmp_path):
    rows = ff.fer2013_rows({"Training": 40, "PublicTest": 10, "PrivateTest": 10}, seed=1)
    ff.write_fer2013_csv(tmp_path / "fer2013.csv", rows)
    (tmp_path / "fer2013new.csv").write_bytes(ff.ferplus_slice(rows.usages))
    return tmp_path, rows


def test_parse_keeps_votes_beside_images_and_resizes_or_repeats_channels_on_request(placed_files):
    folder, rows = placed_files
    counts = {"train": 40, "val": 10, "test": 10}
    parsed = parse_ferplus_files(
        str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), counts, {"image_size": 48, "channels": 1}
    )
    np.testing.assert_array_equal(parsed["train_images"], rows.images[:50])
    np.testing.assert_array_equal(parsed["test_images"], rows.images[50:])
    assert list(parsed["test_annotations"]["row"]) == list(range(50, 60))
    assert parsed["class_names"] == list(ferplus.FERPLUS_CLASS_NAMES)
    large = parse_ferplus_files(
        str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), None, {"image_size": 64, "channels": 3}
    )
    assert large["train_images"].shape == (50, 64, 64, 3) and large["train_images"].dtype == np.uint8
    np.testing.assert_array_equal(large["train_images"][..., 0], large["train_images"][..., 2])
    with pytest.raises(ValueError, match=re.escape("channels must be 1 or 3. Received: channels=2")):
        parse_ferplus_files(str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), None, {"channels": 2})
    with pytest.raises(fer2013.FerFormatError, match=r"train \(Training\): expected 41, found 40"):
        parse_ferplus_files(str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), {"train": 41}, {})


def test_parse_refuses_vote_rows_of_another_usage(placed_files):
    folder, rows = placed_files
    usages = list(rows.usages)
    usages[3] = "PrivateTest"
    (folder / "fer2013new.csv").write_bytes(ff.ferplus_slice(usages))
    with pytest.raises(fer2013.FerFormatError, match=r"1 data row\(s\) differ, first: 4 \(Training vs PrivateTest\)"):
        parse_ferplus_files(str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), None, {})


def test_annotation_table_round_trips_and_bad_tables_are_named(real_annotations):
    train_annotations, _ = real_annotations
    votes = ferplus.votes_from_table(train_annotations, "t")
    assert (~votes.has_image).sum() == 148 + 10  # rows without an image name: Training + PublicTest
    with pytest.raises(fer2013.FerFormatError, match="expected the columns NF in the annotation table"):
        ferplus.votes_from_table(train_annotations.drop(columns=["NF"]), "annotations.csv")
    broken = train_annotations.copy()
    broken.loc[2, "Usage"] = "Validation"
    with pytest.raises(fer2013.FerFormatError, match=r"data row 3 .*Validation"):
        ferplus.votes_from_table(broken, "annotations.csv")


def test_card_lists_both_files_and_the_drops_of_every_label_mode(placed_files, real_annotations):
    folder, _ = placed_files
    parsed = parse_ferplus_files(str(folder / "fer2013.csv"), str(folder / "fer2013new.csv"), None, {})
    train_labels, test_labels, _, drops, _ = label_crowd_votes(
        parsed["train_annotations"], parsed["test_annotations"], "multi_target"
    )
    train, val, test = predefined_split(parsed["train_annotations"], train_labels, test_labels, {"seed": 0})
    source = {
        "url": "https://example.org/fer2013new.csv",
        "known_hash": None,
        "destination": str(folder / "fer2013new.csv"),
    }
    card, markdown = build_crowd_label_card(
        str(folder),
        source,
        drops,
        "multi_target",
        train_images=parsed["train_images"],
        train_labels=train_labels,
        test_labels=test_labels,
        train_indices=train,
        val_indices=val,
        test_indices=test,
        class_names=parsed["class_names"],
        statistics=channel_statistics(parsed["train_images"], train),
    )
    assert [s["file"] for s in card["sources"]] == ["fer2013.csv", "fer2013new.csv"]
    assert card["sources"][0]["url"] == fer2013.FER2013_PAGE_URL and card["sources"][0]["bytes"] > 0
    assert card["split_sizes"] == {"train": len(train), "val": len(val), "test": len(test)}
    assert card["label_mode"] == "multi_target" and len(card["label_drops"]) == 7
    assert "| train | **multi_target** |" in markdown and "| train | majority |" in markdown
    assert "| val | **majority** |" in markdown


def test_report_shows_sixteen_faces_with_their_emotions_and_an_eight_by_eight_confusion_matrix():
    from convbench.pipelines.reporting.nodes import plot_confusion_matrix, plot_sample_predictions

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (20, 48, 48, 1), dtype=np.uint8)
    labels = np.arange(20) % 8
    probabilities = np.eye(8, dtype=np.float32)[(labels + (np.arange(20) % 3 == 0)) % 8]  # every third wrong
    run = {"dataset": "ferplus", "architecture": "vgg13"}
    names = list(ferplus.FERPLUS_CLASS_NAMES)
    figure = plot_sample_predictions(faces, labels, np.arange(20), probabilities, names, run)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 16
    assert (
        titles[0] == "true: neutral\npred: happiness (100%)" and titles[1] == "true: happiness\npred: happiness (100%)"
    )
    images = [axis.get_images()[0] for axis in figure.axes if axis.get_images()]
    assert len(images) == 16 and images[0].get_array().shape == (48, 48) and images[0].get_cmap().name == "gray"
    confusion = np.zeros((8, 8), int)
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    matrix = plot_confusion_matrix({"confusion_matrix": confusion.tolist(), "class_names": names}, run)
    axis = matrix.axes[0]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == names
    assert axis.get_images()[0].get_array().shape == (8, 8)
