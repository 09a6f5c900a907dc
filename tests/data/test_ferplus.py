"""Tests for the FERPlus votes reader and label schemes, on the exact official format and the real file."""

from __future__ import annotations

import hashlib

import fer_files as ff
import numpy as np
import pytest

from convbench.data import ferplus
from convbench.data.fer2013 import FerFormatError, load_fer2013
from convbench.data.ferplus import (
    DROP_REASONS,
    FERPLUS_CLASS_NAMES,
    check_same_rows,
    ferplus_targets,
    label_split,
    load_ferplus,
    parse_ferplus_csv,
)
from convbench.data.ferplus_labels import LABEL_MODES, REFERENCE_MODES

# --- format facts ---------------------------------------------------------------------------


def test_format_facts_match_the_official_file():
    assert tuple(ff.FERPLUS_HEADER.split(",")) == ferplus.FERPLUS_COLUMNS
    assert ff.ferplus_sample_lines()[0] == ff.FERPLUS_HEADER
    assert FERPLUS_CLASS_NAMES == (
        "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    )  # fmt: skip
    assert (ferplus.UNKNOWN, ferplus.NOT_FACE) == (8, 9)


def test_ferplus_fixture_is_the_published_file():
    digest = hashlib.sha256(ff.FERPLUS_SAMPLE.read_bytes()).hexdigest()
    assert digest == ff.FERPLUS_SHA256


# --- fer2013new.csv ---------------------------------------------------------------------------


def test_real_ferplus_file_parses_to_its_known_counts():
    votes = load_ferplus(ff.FERPLUS_SAMPLE)
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


def _drops(**counts: int) -> dict[str, int]:
    """Return a drop-count dict: every reason, zero unless given."""
    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}


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


def test_rows_without_an_image_name_are_dropped_first_whatever_their_votes():
    votes = np.array([(10, 0, 0, 0, 0, 0, 0, 0, 0, 0), (0,) * 9 + (10,), (0, 10, 0, 0, 0, 0, 0, 0, 0, 0)])
    has_image = np.array([False, False, True])
    for mode in LABEL_MODES:
        outcome = label_split(votes, has_image, mode)
        alone = ferplus_targets(votes, mode)
        assert outcome.reasons.tolist() == ["no_image_name", "no_image_name", ""]
        assert outcome.labels.tolist() == [-1, -1, 1]
        np.testing.assert_array_equal(outcome.targets[:2], np.zeros((2, 8)))
        np.testing.assert_array_equal(outcome.targets[2], alone.targets[2])
        assert outcome.drop_counts() == _drops(no_image_name=2)
        assert outcome.kept.tolist() == [False, False, True]


def test_evaluation_splits_always_use_the_majority_scheme():
    assert [ferplus.split_label_mode(split, "crossentropy") for split in ("train", "val", "test")] == [
        "crossentropy",
        "majority",
        "majority",
    ]


# --- both files list the same images ---------------------------------------------------------------


def _placed_files(tmp_path, usages=None):
    """Write a fer2013.csv and a fer2013new.csv; return their parsed tables."""
    rows = ff.fer2013_rows({"Training": 6, "PublicTest": 3, "PrivateTest": 3}, seed=5)
    usages = usages or rows.usages
    fer_path, ferplus_path = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    ff.write_fer2013_csv(fer_path, rows)
    ferplus_path.write_bytes(
        ff.ferplus_text([(usage, f"fer{i:07d}.png", (10,) + (0,) * 9) for i, usage in enumerate(usages)])
    )
    return fer_path, ferplus_path, rows


def test_files_with_the_same_rows_pass(tmp_path):
    fer_path, ferplus_path, _ = _placed_files(tmp_path)
    check_same_rows(load_fer2013(fer_path), load_ferplus(ferplus_path))


def test_row_count_mismatch_is_refused(tmp_path):
    fer_path, ferplus_path, _ = _placed_files(tmp_path)
    lines = ferplus_path.read_bytes().splitlines(keepends=True)
    ferplus_path.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(FerFormatError) as info:
        check_same_rows(load_fer2013(fer_path), load_ferplus(ferplus_path))
    assert str(info.value) == (
        f"{ferplus_path}: expected one FERPlus row per FER2013 row, in the same order; "
        f"{fer_path} has 12 data rows and this file 11"
    )


def test_usage_mismatch_lists_the_first_rows_and_the_count(tmp_path):
    shifted = ["Training"] * 2 + ["PublicTest"] * 4 + ["PrivateTest"] * 6  # 7 rows disagree
    fer_path, ferplus_path, rows = _placed_files(tmp_path, usages=shifted)
    assert sum(a != b for a, b in zip(rows.usages, shifted)) == 7
    with pytest.raises(FerFormatError) as info:
        check_same_rows(load_fer2013(fer_path), load_ferplus(ferplus_path))
    message = str(info.value)
    assert message.startswith(f"{ferplus_path}: expected the same Usage as {fer_path} in every row")
    assert (
        "7 data row(s) differ, first: 3 (Training vs PublicTest), 4 (Training vs PublicTest), "
        "5 (Training vs PublicTest), 6 (Training vs PublicTest), 7 (PublicTest vs PrivateTest)"
    ) in message
    assert "8 (" not in message
