"""`mnist_mlp` and `tinyimagenet_resnet` in the smoke env, from file:// mirrors of files in the official formats."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import mnist_files
import numpy as np
import pandas as pd
import pooch
import pytest
import tiny_imagenet_files
from kedro_project import PNG_SIGNATURE, assert_ran, new_project, run_kedro

pytestmark = pytest.mark.e2e


def kedro_run(project, pipeline: str, params: list[str]) -> None:
    assert_ran(run_kedro(project, f"--pipelines={pipeline}", params))


def md5(path: Path) -> str:
    return f"md5:{pooch.file_hash(str(path), alg='md5')}"


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mnist_mirror")
    paths, expected = mnist_files.make_mnist_files(mirror, train=1200, test=300)
    params = [*mnist_files.mirror_params(paths, train=1200, test=300), "preprocessing.mnist.val_size=300"]
    params += ["training.mlp.augmentation.horizontal_flip=true"]  # --params beats MNIST's no-flip override
    project = new_project(tmp_path_factory)
    kedro_run(project, "mnist_mlp", params)
    return project, expected


def test_mnist_files_are_fetched_and_parsed_exactly(mnist_run):
    project, expected = mnist_run
    folder = project / "data/smoke/02_intermediate/mnist"
    images = np.load(folder / "train_images.npy")
    assert images.dtype == np.uint8 and images.shape == (1200, 28, 28, 1)
    np.testing.assert_array_equal(images, expected["train_images"])
    np.testing.assert_array_equal(np.load(folder / "test_labels.npy"), expected["test_labels"])
    assert sorted(p.name for p in (project / "data/01_raw/mnist").iterdir()) == sorted(
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    )


def test_the_command_line_beats_the_datasets_recipe_overrides(mnist_run):
    project, _ = mnist_run
    recipe = json.loads((project / "data/smoke/06_models/mnist/mlp/recipe.json").read_text())
    assert recipe["augmentation"] == {"horizontal_flip": True} and recipe["epochs"] == 1


def test_mnist_mlp_has_the_reference_size_and_a_card_listing_all_four_files(mnist_run):
    project, _ = mnist_run
    table = pd.read_csv(project / "data/smoke/08_reporting/mnist/mlp/metrics.csv")
    assert table.loc[0, "parameters"] == 59_210 and table.loc[0, "epochs"] == 1
    card = json.loads((project / "data/smoke/08_reporting/mnist/dataset_card.json").read_text())
    assert [source["name"] for source in card["sources"]] == [
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    ]
    assert card["image_shape"] == [28, 28, 1] and card["split_sizes"] == {"train": 512, "val": 256, "test": 256}
    png = (project / "data/smoke/08_reporting/mnist/mlp/sample_predictions.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    assert run.info.run_name == "mnist_mlp" and run.data.metrics["mlp.parameters"] == 59_210
    assert "mnist_mlp/recipe.json" in {a.path for a in client.list_artifacts(run.info.run_id, "mnist_mlp")}


@pytest.fixture(scope="module")
def tinyimagenet_run(tmp_path_factory):
    archive = tmp_path_factory.mktemp("tiny_mirror") / "tiny-imagenet-200.zip"
    expected = tiny_imagenet_files.make_tiny_imagenet_zip(archive, per_class=40, val=40, image_size=32)
    classes = len(expected["class_names"])
    params = [
        f"ingestion.tinyimagenet.source.url={archive.as_uri()}",
        f"ingestion.tinyimagenet.source.known_hash={md5(archive)}",
        f"ingestion.tinyimagenet.options.expected_classes={classes}",
        "ingestion.tinyimagenet.options.expected_per_class=40",
        "ingestion.tinyimagenet.options.expected_val=40",
        "preprocessing.tinyimagenet.val_size=40",
        "preprocessing.tinyimagenet.subset.train=80",
        "preprocessing.tinyimagenet.subset.val=40",
        "preprocessing.tinyimagenet.subset.test=40",
    ]
    project = new_project(tmp_path_factory)
    kedro_run(project, "tinyimagenet_resnet", params)
    return project, expected


def test_tiny_imagenet_jpegs_are_decoded_to_32x32_rgb_with_their_wnid_labels(tinyimagenet_run):
    project, expected = tinyimagenet_run
    folder = project / "data/smoke/02_intermediate/tinyimagenet"
    images = np.load(folder / "train_images.npy")
    assert (
        images.dtype == np.uint8 and images.shape == expected["train_images"].shape and images.shape[1:] == (32, 32, 3)
    )
    np.testing.assert_array_equal(images, expected["train_images"])
    np.testing.assert_array_equal(np.load(folder / "test_labels.npy"), expected["test_labels"])
    assert __import__("json").loads((folder / "class_names.json").read_text()) == list(expected["class_names"])


def test_tinyimagenet_resnet_reports_and_tracks(tinyimagenet_run):
    project, expected = tinyimagenet_run
    report = project / "data/smoke/08_reporting/tinyimagenet/resnet"
    table = pd.read_csv(report / "metrics.csv")
    assert table.loc[0, "epochs"] == 1 and 0 <= table.loc[0, "test_accuracy"] <= 1
    assert len(pd.read_csv(report / "per_class_accuracy.csv")) == len(expected["class_names"])
    assert (report / "confusion_matrix.png").read_bytes().startswith(PNG_SIGNATURE)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tinyimagenet").experiment_id])
    assert run.info.run_name == "tinyimagenet_resnet" and run.info.status == "FINISHED"
