"""`cifar100_resnet` in the smoke env from a file:// mirror: fine and coarse labels, top-5 accuracy."""

from __future__ import annotations

import cifar_archives
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro_project import assert_ran, new_project, run_kedro

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cifar100_run(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mirror") / "cifar-100-binary.tar.gz"
    expected = cifar_archives.make_cifar100_archive(mirror, train=1000, test=300)
    project = new_project(tmp_path_factory)
    params = [
        f"ingestion.cifar100.source.url={mirror.as_uri()}",
        f"ingestion.cifar100.source.known_hash={cifar_archives.known_hash(mirror)}",
        "ingestion.cifar100.expected_counts.train=1000",
        "ingestion.cifar100.expected_counts.test=300",
        "preprocessing.cifar100.val_size=300",
    ]
    assert_ran(run_kedro(project, "--pipelines=cifar100_resnet", params))
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
