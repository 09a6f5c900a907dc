"""`cifar100_resnet` in the smoke env from a file:// mirror: fine and coarse labels, top-5 accuracy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import cifar_archives

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")


@pytest.fixture(scope="module")
def cifar100_run(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mirror") / "cifar-100-binary.tar.gz"
    expected = cifar_archives.make_cifar100_archive(mirror, train=1000, test=300)
    project = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf")
    shutil.copytree(PROJECT_ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = ",".join(
        [
            f"ingestion.cifar100.source.url={mirror.as_uri()}",
            f"ingestion.cifar100.source.known_hash={cifar_archives.known_hash(mirror)}",
            "ingestion.cifar100.expected_counts.train=1000",
            "ingestion.cifar100.expected_counts.test=300",
            "preprocessing.cifar100.val_size=300",
        ]
    )
    command = [str(KEDRO), "run", "--pipelines=cifar100_resnet", "--env=smoke", f"--params={params}"]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return project, expected


def test_fine_and_coarse_labels_are_both_kept(cifar100_run):
    project, expected = cifar100_run
    folder = project / "data/smoke/02_intermediate/cifar100"
    np.testing.assert_array_equal(np.load(folder / "train_labels.npy"), expected["train_labels"])
    np.testing.assert_array_equal(np.load(folder / "train_coarse_labels.npy"), expected["train_coarse_labels"])
    np.testing.assert_array_equal(np.load(folder / "test_coarse_labels.npy"), expected["test_coarse_labels"])
    assert (project / "data/01_raw/cifar-100-binary.tar.gz").stat().st_size > 0


def test_top5_accuracy_is_reported_in_the_table_and_mlflow(cifar100_run):
    project, _ = cifar100_run
    table = pd.read_csv(project / "data/smoke/08_reporting/cifar100/resnet/metrics.csv")
    assert table.loc[0, "test_top5_accuracy"] >= table.loc[0, "test_accuracy"]
    assert len(pd.read_csv(project / "data/smoke/08_reporting/cifar100/resnet/per_class_accuracy.csv")) == 100
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar100").experiment_id])
    assert run.info.run_name == "cifar100_resnet"
    assert run.data.metrics["resnet.test_top5_accuracy"] == pytest.approx(table.loc[0, "test_top5_accuracy"])
