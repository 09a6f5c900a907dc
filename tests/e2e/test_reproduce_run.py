"""`kedro run --pipelines=reproduce` in the smoke env: two MNIST claims trained, reported, and skipped on a rerun."""

from __future__ import annotations

import mlflow
import mnist_files
import pandas as pd
import pytest
import yaml
from kedro_project import PNG_SIGNATURE, assert_ran, new_project, run_kedro

pytestmark = pytest.mark.e2e

CLAIMS = {
    "digits_easy": {"dataset": "mnist", "architecture": "mlp", "metric": "test_accuracy", "published": 0.0,
                    "source": "a figure any run reaches", "recipe": {"batch_size": 32}},
    "digits_hard": {"dataset": "mnist", "architecture": "residual_mlp", "metric": "val_accuracy",
                    "published": 1.0, "tolerance": 0.0, "source": "a figure no smoke run reaches",
                    "recipe": {"model": {"blocks": 2, "layers_per_block": 1, "units": 32}}},
}  # fmt: skip


def claim_runs(project) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        experiment = mlflow.get_experiment_by_name("reproduce")
        return mlflow.search_runs([experiment.experiment_id], "tags.`convbench.claim` != ''", output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mnist_mirror")
    paths, _ = mnist_files.make_mnist_files(mirror, train=1200, test=300)
    params = [*mnist_files.mirror_params(paths, train=1200, test=300), "preprocessing.mnist.val_size=300"]
    project = new_project(tmp_path_factory)
    (project / "conf/base/parameters_reproduce.yml").write_text(
        yaml.safe_dump({"reproduce": {"budget_minutes": None, "ui_url": "http://127.0.0.1:5000"}, "claims": CLAIMS})
    )
    first = assert_ran(run_kedro(project, "--pipelines=reproduce", params))
    runs_after_first = claim_runs(project)
    report_after_first = pd.read_csv(project / "data/smoke/08_reporting/reproduction.csv")
    wide = {"COLUMNS": "400"}  # rich does not wrap the log lines the test reads
    second = assert_ran(run_kedro(project, "--pipelines=reproduce", params, env=wide))
    return project, first, second, runs_after_first, report_after_first


def test_each_claim_trains_in_its_own_finished_mlflow_run_with_its_curves(reproduced):
    _, _, _, runs, _ = reproduced
    assert sorted(run.data.tags["convbench.claim"] for run in runs) == ["digits_easy", "digits_hard"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["convbench.env"] == "smoke"
        assert run.data.tags["mlflow.parentRunId"]  # nested in the kedro run's run
    easy = next(run for run in runs if run.data.tags["convbench.claim"] == "digits_easy")
    assert "mlp.val_accuracy" in easy.data.metrics  # the per-epoch curves of the training
    assert 0.0 <= easy.data.metrics["claim.measured"] <= 1.0


def test_the_report_gives_each_claim_its_verdict_difference_and_run(reproduced):
    project, _, _, runs, table = reproduced
    rows = table.set_index("claim")
    assert rows.loc["digits_easy", "verdict"] == "reproduced"
    assert rows.loc["digits_hard", "verdict"] == "not reproduced"
    hard = next(run for run in runs if run.data.tags["convbench.claim"] == "digits_hard")
    assert rows.loc["digits_hard", "measured"] == pytest.approx(hard.data.metrics["claim.measured"])
    assert rows.loc["digits_hard", "difference"] == pytest.approx(hard.data.metrics["claim.measured"] - 1.0)
    assert rows.loc["digits_hard", "run"].endswith(hard.info.run_id)
    assert (project / "data/smoke/08_reporting/reproduction.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (project / "data/smoke/08_reporting/reproduction.md").read_text()
    assert markdown.startswith("Claims: 1 reproduced, 1 not reproduced, 0 not run.")


def test_a_rerun_trains_neither_claim_again_and_reports_the_same(reproduced):
    project, _, second, runs, table = reproduced
    output = second.stdout + second.stderr
    assert output.count("reusing finished run") == 2
    assert len(claim_runs(project)) == len(runs) == 2
    again = pd.read_csv(project / "data/smoke/08_reporting/reproduction.csv")
    pd.testing.assert_series_equal(again["measured"], table["measured"])
