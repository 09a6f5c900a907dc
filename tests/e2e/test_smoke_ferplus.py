"""`ferplus_vgg13` in the smoke env: fer2013.csv placed by hand, fer2013new.csv fetched from a file:// mirror.

The FERPlus votes are real rows of microsoft/FERPlus' file (one per synthetic FER2013 row, same
Usage), so the label schemes drop what they drop on the real data.
"""

from __future__ import annotations

import json

import fer_files
import mlflow
import numpy as np
import pandas as pd
import pooch
import pytest
from kedro_project import PNG_SIGNATURE, assert_ran, new_project, run_kedro

from convbench.data.ferplus import DROP_REASONS

pytestmark = pytest.mark.e2e

ROWS = {"Training": 700, "PublicTest": 300, "PrivateTest": 300}
SUBSET = {"train": 256, "val": 128, "test": 128}


def ferplus_params(mirror_file) -> list[str]:
    return [
        f"ingestion.ferplus.source.url={mirror_file.as_uri()}",
        f"ingestion.ferplus.source.known_hash=sha256:{pooch.file_hash(str(mirror_file))}",
        f"ingestion.ferplus.expected_counts.train={ROWS['Training']}",
        f"ingestion.ferplus.expected_counts.val={ROWS['PublicTest']}",
        f"ingestion.ferplus.expected_counts.test={ROWS['PrivateTest']}",
        *(f"preprocessing.ferplus.subset.{split}={size}" for split, size in SUBSET.items()),
    ]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ferplus_mirror")
    rows = fer_files.fer2013_rows(ROWS, seed=3)
    fer_files.write_fer2013_csv(folder / "fer2013.csv", rows)
    (folder / "fer2013new.csv").write_bytes(fer_files.ferplus_slice(rows.usages))
    return folder, rows


@pytest.fixture(scope="module")
def ferplus_run(tmp_path_factory, mirror):
    folder, rows = mirror
    project = new_project(tmp_path_factory)
    (project / "data/01_raw").mkdir(parents=True)
    (project / "data/01_raw/fer2013.csv").write_bytes((folder / "fer2013.csv").read_bytes())
    params = [*ferplus_params(folder / "fer2013new.csv"), "preprocessing.ferplus.label_mode=probability"]
    assert_ran(run_kedro(project, "--pipelines=ferplus_vgg13", params))
    return project, rows


def test_missing_fer2013_stops_the_run_before_anything_else_with_where_to_put_it(tmp_path_factory, mirror):
    folder, _ = mirror
    project = new_project(tmp_path_factory)
    result = run_kedro(project, "--pipelines=ferplus_vgg13", ferplus_params(folder / "fer2013new.csv"))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    raw = (project / "data/01_raw").resolve()
    assert "FER2013 is missing" in " ".join(output.split())
    assert "kaggle.com/c/challenges-in-representation-learning" in output.replace("\n", "")
    assert "fer2013.csv" in output and "fer2013.tar.gz" in output
    assert str(raw / "fer2013.tar.gz")[-40:] in "".join(output.split())
    # Nothing ran before the check: the votes were not downloaded, no array was written.
    assert not (project / "data/01_raw/fer2013new.csv").exists()
    assert not (project / "data/smoke").exists()


def test_pixels_and_votes_are_joined_row_by_row_into_the_training_pool_and_the_test_set(ferplus_run):
    project, rows = ferplus_run
    folder = project / "data/smoke/02_intermediate/ferplus"
    pool = np.load(folder / "train_images.npy")
    development = [i for i, usage in enumerate(rows.usages) if usage != "PrivateTest"]
    np.testing.assert_array_equal(pool, rows.images[development])
    np.testing.assert_array_equal(np.load(folder / "test_images.npy"), rows.images[rows.split_rows("PrivateTest")])
    annotations = pd.read_csv(folder / "train_annotations.csv", keep_default_na=False)
    assert list(annotations["row"]) == development
    assert list(annotations["Usage"]) == [rows.usages[i] for i in development]
    real = fer_files.ferplus_slice(rows.usages).decode().splitlines()[1:]
    assert [int(v) for v in real[5].split(",")[2:]] == annotations.loc[5, "neutral":"NF"].tolist()


def test_training_uses_probability_labels_and_evaluation_the_majority(ferplus_run):
    project, _ = ferplus_run
    inputs = project / "data/smoke/05_model_input/ferplus"
    targets, labels = np.load(inputs / "train_targets.npy"), np.load(inputs / "train_labels.npy")
    train, val = np.load(inputs / "train_indices.npy"), np.load(inputs / "val_indices.npy")
    assert (
        len(train) == SUBSET["train"] and len(val) == SUBSET["val"] and len(np.load(inputs / "test_indices.npy")) == 128
    )
    np.testing.assert_allclose(targets[train].sum(axis=1), 1.0, rtol=1e-6)
    assert (targets[train] % 1 != 0).any(), "probability targets are vote distributions, not one-hot"
    assert set(np.unique(targets[val])) == {0.0, 1.0}
    assert (labels[train] >= 0).all() and (labels[val] >= 0).all()
    recipe = json.loads((project / "data/smoke/06_models/ferplus/vgg13/recipe.json").read_text())
    assert recipe["label_mode"] == "probability" and recipe["epochs"] == 1


def test_card_counts_drops_per_label_mode_and_mlflow_has_them(ferplus_run):
    project, _ = ferplus_run
    reporting = project / "data/smoke/08_reporting/ferplus"
    card = json.loads((reporting / "dataset_card.json").read_text())
    assert [source["file"] for source in card["sources"]] == ["fer2013.csv", "fer2013new.csv"]
    assert card["sources"][1]["checksum"].startswith("sha256:") and card["image_shape"] == [48, 48, 1]
    assert card["label_mode"] == "probability" and len(card["classes"]) == 8
    drops = pd.DataFrame(card["label_drops"])
    assert list(drops["label_mode"]) == [
        "majority",
        "probability",
        "crossentropy",
        "multi_target",
        "seed_distribution",
        "majority",
        "majority",
    ]
    assert (drops.drop(columns=["split", "label_mode", "used", "rows"]).sum(axis=1) == drops["rows"]).all()
    used = drops[drops["used"]]
    assert list(used["split"]) == ["train", "val", "test"] and list(used["label_mode"]) == [
        "probability",
        "majority",
        "majority",
    ]
    assert "**probability**" in (reporting / "dataset_card.md").read_text()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ferplus").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["preprocessing.ferplus.label_mode"] == "probability"
    train_row = used.iloc[0]
    for reason in DROP_REASONS:
        assert run.data.metrics[f"ferplus.dropped.train.{reason}"] == train_row[reason]
    assert run.data.metrics["ferplus.kept.val"] == used.iloc[1]["kept"]
    assert "ferplus/label_drops.csv" in {a.path for a in client.list_artifacts(run.info.run_id, "ferplus")}


def test_report_shows_sixteen_faces_and_the_eight_by_eight_confusion_matrix(ferplus_run):
    project, _ = ferplus_run
    report = project / "data/smoke/08_reporting/ferplus/vgg13"
    evaluation = json.loads((project / "data/smoke/07_model_output/ferplus/vgg13/evaluation.json").read_text())
    confusion = np.array(evaluation["confusion_matrix"])
    assert confusion.shape == (8, 8) and confusion.sum() == SUBSET["test"]
    assert evaluation["class_names"][:2] == ["neutral", "happiness"]
    for figure in ("sample_predictions", "confusion_matrix", "learning_curves"):
        assert (report / f"{figure}.png").read_bytes().startswith(PNG_SIGNATURE)
    table = pd.read_csv(report / "metrics.csv")
    assert table.loc[0, "epochs"] == 1 and 0 <= table.loc[0, "test_accuracy"] <= 1
