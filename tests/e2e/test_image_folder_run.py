"""A folder of the user's own images, declared in conf/ as `ingestion.pets: {format: image_folder, ...}`:
its pipelines exist for every architecture, train, report, rank and predict in the smoke env."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest
from image_folders import class_image, make_user_folder
from kedro_project import PNG_SIGNATURE, assert_ran, kedro_env, new_project, run_kedro

from convbench.models.registry import ARCHITECTURES

pytestmark = pytest.mark.e2e

DECLARATION = """\
ingestion:
  pets:
    format: image_folder
    path: data/01_raw/pets        # train/<class>/<image>; no test/, so 25% of train/ is carved out
    image_size: 32
    test_size: 0.25
    max_corrupt: 1
"""

WIDE_LOG = {"COLUMNS": "400"}
"""Rich's log lines unwrapped, so a test finds a message whole."""


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory):
    project = new_project(tmp_path_factory)
    counts = make_user_folder(project / "data/01_raw/pets", per_class=40)
    (project / "data/01_raw/pets/train/dog/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    (project / "conf/base/parameters_pets.yml").write_text(DECLARATION)
    result = assert_ran(run_kedro(project, "--pipelines=pets_simple_cnn,pets_mlp", [], env=WIDE_LOG))
    return project, counts, result


@pytest.fixture(scope="module")
def tracking(pets_run):
    project, _, _ = pets_run
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_the_declared_folder_has_a_pipeline_for_every_architecture(pets_run, tmp_path):
    project, _, _ = pets_run
    listing = tmp_path / "pipelines.json"
    script = (
        "import json, sys; from convbench.pipeline_registry import register_pipelines; "
        "open(sys.argv[1], 'w').write(json.dumps(sorted(register_pipelines())))"
    )
    source = str(project / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    subprocess.run(
        [sys.executable, "-c", script, str(listing)], cwd=project, env=kedro_env({"PYTHONPATH": source}), check=True
    )
    names = set(json.loads(listing.read_text()))
    for architecture in ARCHITECTURES:
        assert f"pets_{architecture}" in names and f"pets_{architecture}_search" in names
    assert {"pets", "pets_data", "pets_ingestion", "pets_leaderboard"} <= names


def test_images_are_resized_and_the_test_split_carved_per_class(pets_run):
    project, counts, _ = pets_run
    folder = project / "data/smoke/02_intermediate/pets"
    train, test = np.load(folder / "train_images.npy"), np.load(folder / "test_images.npy")
    assert train.shape[1:] == test.shape[1:] == (32, 32, 3) and train.dtype == np.uint8
    assert json.loads((folder / "class_names.json").read_text()) == ["cat", "dog", "frog"]
    test_counts = np.bincount(np.load(folder / "test_labels.npy"), minlength=3)
    assert list(test_counts) == [10, 10, 0]  # 25% of cat and dog; the single frog stays in training
    assert len(train) + len(test) == sum(counts.values())


def test_the_card_lists_every_class_with_its_count_and_the_manifest_every_file(pets_run):
    project, _, _ = pets_run
    card = json.loads((project / "data/smoke/08_reporting/pets/dataset_card.json").read_text())
    assert card["classes"] == ["cat", "dog", "frog"]
    assert {split: sum(counts) for split, counts in card["class_counts"].items()} == card["split_sizes"]
    assert card["class_counts"]["test"] == [10, 10, 0]
    assert card["sources"][0]["file"] == "pets/" and card["sources"][0]["url"].startswith("file://")
    markdown = (project / "data/smoke/08_reporting/pets/dataset_card.md").read_text()
    assert "| frog |" in markdown
    manifest = pd.read_csv(project / "data/smoke/08_reporting/pets/image_folder_manifest.csv", keep_default_na=False)
    status = manifest.set_index("file")["status"]
    assert status["train/dog/broken.png"] == "corrupt" and status["train/cat/notes.txt"] == "not_an_image"
    assert (manifest["status"] == "used").sum() == 81


def test_the_log_names_the_skipped_file_and_ends_with_the_results(pets_run):
    project, _, result = pets_run
    log = result.stdout + result.stderr
    assert "train/dog/broken.png" in log and "could not be read as an image" in log
    for architecture in ("mlp", "simple_cnn"):
        accuracy = pd.read_csv(project / f"data/smoke/08_reporting/pets/{architecture}/metrics.csv").loc[
            0, "test_accuracy"
        ]
        assert f"Result: {architecture} on pets: test accuracy {100 * accuracy:.2f}%" in " ".join(log.split())


def test_both_architectures_train_report_and_reach_mlflow(pets_run, tracking):
    project, _, _ = pets_run
    for architecture in ("simple_cnn", "mlp"):
        table = pd.read_csv(project / f"data/smoke/08_reporting/pets/{architecture}/metrics.csv")
        assert 0.0 <= table.loc[0, "test_accuracy"] <= 1.0 and table.loc[0, "dataset"] == "pets"
        figure = project / f"data/smoke/08_reporting/pets/{architecture}/learning_curves.png"
        assert figure.read_bytes().startswith(PNG_SIGNATURE)
    (run,) = tracking.search_runs([tracking.get_experiment_by_name("pets").experiment_id])
    assert {"simple_cnn.test_accuracy", "mlp.test_accuracy", "simple_cnn.l2_penalty"} <= set(run.data.metrics)
    assert run.data.params["ingestion.pets.path"] == "data/01_raw/pets"


def test_the_leaderboard_and_predict_work_on_the_folder(pets_run, tracking, tmp_path):
    project, _, _ = pets_run
    assert_ran(run_kedro(project, "--pipelines=pets_leaderboard", []))
    board = pd.read_csv(project / "data/smoke/08_reporting/pets/leaderboard.csv")
    assert sorted(board["architecture"]) == ["mlp", "simple_cnn"]

    photos = tmp_path / "photos"
    rng = np.random.default_rng(5)
    for name, class_name in (("garden cat.png", "cat"), ("dog.bmp", "dog")):
        photos.mkdir(exist_ok=True)
        cv2.imwrite(str(photos / name), cv2.cvtColor(class_image(class_name, rng, (80, 60)), cv2.COLOR_RGB2BGR))
    assert_ran(run_kedro(project, "--pipelines=predict", [f"predict.input_dir={photos}", "predict.dataset=pets"]))
    predictions = pd.read_csv(project / "data/smoke/08_reporting/predict/predictions.csv")
    assert list(predictions["file"]) == ["dog.bmp", "garden cat.png"]
    assert set(predictions["class_1"]) <= {"cat", "dog", "frog"}
    (uri,) = set(predictions["model_uri"])
    best = board[board["test_accuracy"] == board["test_accuracy"].max()]
    assert uri in {f"runs:/{row.run_id}/pets_{row.architecture}_classifier" for row in best.itertuples()}


def test_a_link_out_of_the_folder_stops_the_run_and_names_it(tmp_path_factory):
    project = new_project(tmp_path_factory)
    make_user_folder(project / "data/01_raw/pets", per_class=8)
    outside = tmp_path_factory.mktemp("outside")
    cv2.imwrite(str(outside / "secret.png"), np.zeros((8, 8), np.uint8))
    link = project / "data/01_raw/pets/train/cat/secret.png"
    os.symlink(outside / "secret.png", link)
    (project / "conf/base/parameters_pets.yml").write_text(DECLARATION)
    result = run_kedro(project, "--pipelines=pets_ingestion", [], env=WIDE_LOG)
    assert result.returncode != 0
    assert "outside the dataset folder" in result.stdout + result.stderr
    assert not (project / "data/smoke/02_intermediate/pets/train_images.npy").exists()
