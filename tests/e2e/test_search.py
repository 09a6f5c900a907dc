"""`cifar10_mlp_search` as users run it: a smoke-sized study end to end, a worker killed with -9 and
rerun, two workers at once on one study in a real PostgreSQL server, and a study on a Dask cluster of two
workers.

The archive is in the official CIFAR-10 binary layout, with the red plane of every image coding
its label, so trials learn at different speeds and the pruner has something to judge.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import browser
import cifar_archives
import dask_cluster
import mlflow
import numpy as np
import optuna
import pytest
import sqlalchemy
import yaml
from kedro_project import KEDRO, PNG_SIGNATURE, assert_ran, mlflow_ui, new_project, run_kedro
from optuna.trial import TrialState

from convbench.config import ConvbenchConfigLoader
from convbench.pipelines.training.nodes import resolve_recipe
from convbench.search.space import as_overrides, with_values
from convbench.search.study import FAILED_BECAUSE_ATTR, RETRY_OF_ATTR
from convbench.tracking import KILLED_TAG, PROCESS_TAG

pytestmark = pytest.mark.e2e

PER_BATCH, TEST_RECORDS, VAL_SIZE = 200, 300, 300
RECORD = 1 + 32 * 32 * 3
SEARCH = "--pipelines=cifar10_mlp_search"
REPORTS = Path("data/smoke/08_reporting/cifar10/mlp/search")
DEFAULT_STUDY = Path("data/smoke/06_models/cifar10/mlp/search/optuna.db")


def learnable(members: dict[str, bytes]) -> dict[str, bytes]:
    """The archive's members with each record's red plane set to 25 x its label."""
    changed = {}
    for name, data in members.items():
        if name.endswith(".bin") and "batch" in name:
            records = np.frombuffer(data, np.uint8).reshape(-1, RECORD).copy()
            records[:, 1 : 1 + 1024] = records[:, :1] * 25
            data = records.tobytes()
        changed[name] = data
    return changed


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose smoke data is prepared (`cifar10_data`), as a search worker expects it."""
    archive = tmp_path_factory.mktemp("mirror") / "cifar-10-binary.tar.gz"
    cifar_archives.make_cifar10_archive(archive, per_batch=PER_BATCH, test=TEST_RECORDS, mutate=learnable)
    root = new_project(tmp_path_factory)
    params = [
        f"ingestion.cifar10.source.url={archive.as_uri()}",
        f"ingestion.cifar10.source.known_hash={cifar_archives.known_hash(archive)}",
        f"ingestion.cifar10.expected_counts.train={5 * PER_BATCH}",
        f"ingestion.cifar10.expected_counts.test={TEST_RECORDS}",
        f"preprocessing.cifar10.val_size={VAL_SIZE}",
    ]
    assert_ran(run_kedro(root, "--pipelines=cifar10_data", params))
    return root


def tracking_client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def search_runs(project: Path) -> tuple[list, list]:
    """The `cifar10_mlp_search` runs and the trial runs of the project's MLflow store, oldest first."""
    client = tracking_client(project)
    experiment = client.get_experiment_by_name("cifar10")
    found = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [run for run in found if run.info.run_name == "cifar10_mlp_search"]
    trials = [run for run in found if "optuna.trial_number" in run.data.tags]
    return parents, trials


def study_of(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def smoke_search(project):
    result = assert_ran(run_kedro(project, SEARCH, []))
    return result, study_of(f"sqlite:///{project / DEFAULT_STUDY}", "cifar10_mlp")


def test_a_smoke_search_runs_six_trials_prunes_and_writes_the_best_recipe(project, smoke_search):
    _, study = smoke_search
    trials = study.get_trials()
    states = [trial.state for trial in trials]
    assert [trial.number for trial in trials] == list(range(6))
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert states.count(TrialState.PRUNED) >= 1, "the median pruner stopped a trailing trial"
    assert all(len(trial.intermediate_values) == 2 for trial in trials if trial.state == TrialState.COMPLETE)
    assert all(len(trial.intermediate_values) < 2 for trial in trials if trial.state == TrialState.PRUNED)

    best = study.best_trial
    best_params = yaml.safe_load((project / REPORTS / "best_params.yml").read_text())
    recipe = json.loads((project / REPORTS / "best_recipe.json").read_text())
    assert best_params["training"]["mlp"]["model"]["units"] == best.params["model.units"]
    assert recipe["model"]["units"] == best.params["model.units"]
    assert recipe["schedule"]["lr"] == pytest.approx(best.params["learning_rate"])
    assert recipe["batch_size"] == best.params["batch_size"] and "budget" not in recipe
    report = (project / REPORTS / "report.md").read_text()
    assert f"Best: trial {best.number}" in report and "kedro run --pipelines=cifar10_mlp --params=" in report
    rows = (project / REPORTS / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
    for figure in ("history", "importance", "parallel"):
        assert (project / REPORTS / f"{figure}.png").read_bytes().startswith(PNG_SIGNATURE), figure


def test_every_trial_is_a_nested_mlflow_run_with_its_values_curves_and_state(project, smoke_search):
    _, study = smoke_search
    (parent,), trial_runs = search_runs(project)
    client = tracking_client(project)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["search.best_val_accuracy"] == pytest.approx(study.best_value)
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "cifar10_mlp_search")}
    assert {"cifar10_mlp_search/parallel.png", "cifar10_mlp_search/best_params.yml"} <= artifacts
    by_number = {int(run.data.tags["optuna.trial_number"]): run for run in trial_runs}
    assert sorted(by_number) == list(range(6))
    for trial in study.get_trials():
        run = by_number[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == "FINISHED"
        assert {key: run.data.params[key] for key in trial.params} == {k: str(v) for k, v in trial.params.items()}
        curve = client.get_metric_history(run.info.run_id, "mlp.val_accuracy")
        assert [point.value for point in curve] == pytest.approx(list(trial.intermediate_values.values()))


def test_the_mlflow_ui_shows_the_trials_nested_under_the_search_with_their_curves(project, smoke_search):
    """Headless Chromium on `mlflow ui`: the search run expands into its six trials, whose curves chart side by side."""
    with mlflow_ui(project) as base:
        experiment = tracking_client(project).get_experiment_by_name("cifar10").experiment_id
        with browser.open_page(f"{base}/#/experiments/{experiment}/runs", size=(1500, 900)) as page:
            page.get_by_text("cifar10_mlp_search").first.wait_for()
            page.get_by_text("Model training", exact=True).first.click()  # not the GenAI view
            search_row = page.locator("[role=gridcell][col-id='attributes.`Run Name`']", has_text="cifar10_mlp_search")
            search_row.first.wait_for()
            assert not page.get_by_text("cifar10_mlp_trial_0").first.is_visible()  # nested: folded at first
            search_row.first.locator("button").first.click()
            for number in range(6):
                page.get_by_text(f"cifar10_mlp_trial_{number}").first.wait_for()
            browser.screenshot(page, "mlflow_search_trials_table.png")
            page.locator("[role=radiogroup][data-component-type=segmented_control_group] label").nth(1).click()
            page.get_by_placeholder("Search metric charts").fill("mlp.val_accuracy")
            page.get_by_text("mlp.val_accuracy", exact=True).first.wait_for()
            page.wait_for_timeout(1500)  # the charts draw after their titles
            browser.dismiss(page, "[aria-label='Close']")  # the MLflow Assistant panel, which opens by itself
            page.wait_for_timeout(500)
            png = browser.screenshot(page, "mlflow_search_trials.png")
        assert png.stat().st_size > 20_000


def test_the_best_params_file_in_conf_local_trains_the_best_trials_recipe(project, smoke_search):
    _, study = smoke_search
    local = project / "conf/local/parameters_search_best_mlp.yml"
    local.write_text((project / REPORTS / "best_params.yml").read_text())
    try:
        loader = ConvbenchConfigLoader(
            str(project / "conf"), base_env="base", default_run_env="local", merge_strategy={"parameters": "soft"}
        )
        parameters = loader["parameters"]
    finally:
        local.unlink()
    recipe = resolve_recipe(
        parameters["training"]["mlp"],
        parameters["recipe_overrides"]["cifar10"],
        parameters["run_recipe_settings"]["mlp"],
    )
    base = resolve_recipe(parameters["training"]["mlp"], parameters["recipe_overrides"]["cifar10"], {})
    assert recipe == with_values(base, study.best_params)
    assert as_overrides(study.best_params, "mlp", base)["training"]["mlp"]["model"]["units"] == recipe["model"]["units"]


def test_a_search_without_prepared_data_names_the_files_and_the_command(tmp_path_factory):
    bare = new_project(tmp_path_factory)
    result = run_kedro(bare, SEARCH, [])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "kedro run --pipelines=cifar10_data --env=smoke" in " ".join(output.split())
    assert "02_intermediate/cifar10/train_images.npy" in "".join(output.split())  # rich wraps long lines


def start_worker(project: Path, params: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [str(KEDRO), "run", SEARCH, "--env=smoke", f"--params={','.join(params)}"]
    return subprocess.Popen(
        command,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_a_worker_killed_mid_trial_is_resumed_by_rerunning_with_no_trial_counted_twice(project):
    name, trials = "killed_study", 5
    url = f"sqlite:///{project / DEFAULT_STUDY}"
    # No pruning: the smoke pruner may stop a trial right after its first epoch, leaving no moment to kill it in.
    params = [
        f"search.study_name={name}",
        f"search.n_trials={trials}",
        "search.trial_budget.epochs=4",
        "search.pruner.name=none",
    ]
    worker = start_worker(project, params)

    def mid_trial() -> bool:
        try:
            found = study_of(url, name).get_trials()
        except (KeyError, sqlalchemy.exc.OperationalError):  # not created yet, or locked by a stopped worker
            return False
        finished = [trial for trial in found if trial.state.is_finished()]
        running = [trial for trial in found if trial.state == TrialState.RUNNING and trial.intermediate_values]
        return len(finished) >= 2 and bool(running)

    def frozen_mid_trial() -> bool:
        """Stop the worker where it is, and keep it stopped only if it is mid-trial.

        Checking a running worker races with it: a trial seen running can be pruned or
        completed before the kill lands. A stopped worker cannot move on.
        """
        if not mid_trial():
            return False
        os.killpg(worker.pid, signal.SIGSTOP)
        if mid_trial():
            return True
        os.killpg(worker.pid, signal.SIGCONT)
        return False

    deadline = time.monotonic() + 600
    while not frozen_mid_trial():
        assert worker.poll() is None, worker.stdout.read()[-5000:]
        assert time.monotonic() < deadline, "no trial was mid-way within 10 minutes"
        time.sleep(0.1)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=60)
    before = study_of(url, name).get_trials()
    (killed,) = [trial for trial in before if trial.state == TrialState.RUNNING]
    finished_before = {trial.number for trial in before if trial.state.is_finished()}

    rerun = start_worker(project, params)
    output = rerun.communicate(timeout=900)[0]
    assert rerun.returncode == 0, output[-5000:]
    after = study_of(url, name).get_trials()
    counted = [trial for trial in after if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == trials
    assert after[killed.number].state == TrialState.FAIL and FAILED_BECAUSE_ATTR in after[killed.number].user_attrs
    (retry,) = [trial for trial in after if trial.user_attrs.get(RETRY_OF_ATTR) == killed.number]
    assert retry.params == killed.params and retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(after) == trials + 1  # the failed trial is kept, and counted by no one
    for trial in after:
        if trial.number in finished_before:  # finished before the kill: never run again
            assert before[trial.number].datetime_complete == trial.datetime_complete

    parents, trial_runs = search_runs(project)
    killed_worker, resumed_worker = [run for run in parents if "killed_study" in run.data.params["search.study_name"]]
    assert killed_worker.info.status == "KILLED" and "was gone" in killed_worker.data.tags[KILLED_TAG]
    assert resumed_worker.info.status == "FINISHED"
    killed_run = next(
        run
        for run in trial_runs
        if run.data.tags["optuna.study"] == name and run.data.tags["optuna.trial_number"] == str(killed.number)
    )
    assert killed_run.info.status == "KILLED"  # its nested run does not stay RUNNING either


def test_two_workers_share_one_study_in_postgresql_and_run_exactly_n_trials(project, postgres_server):
    url = postgres_server.create_database("optuna_two_workers")
    name, trials = "two_workers", 6
    params = [f"search.storage={url}", f"search.study_name={name}", f"search.n_trials={trials}"]
    workers = [start_worker(project, params) for _ in range(2)]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-5000:]

    found = study_of(url, name).get_trials()
    assert len(found) == trials, [(trial.number, trial.state) for trial in found]
    assert sorted(trial.number for trial in found) == list(range(trials))
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in found)
    pids = {trial.user_attrs[PROCESS_TAG] for trial in found}
    assert len(pids) == 2, "both workers ran trials"
    assert {worker.pid for worker in workers} == {int(identity.split(":")[1]) for identity in pids}

    parents, trial_runs = search_runs(project)
    ours = [run for run in trial_runs if run.data.tags["optuna.study"] == name]
    assert sorted(int(run.data.tags["optuna.trial_number"]) for run in ours) == list(range(trials))
    worker_runs = {run.info.run_id: run for run in parents if run.data.params.get("search.study_name") == name}
    assert len(worker_runs) == 2 and all(run.info.status == "FINISHED" for run in worker_runs.values())
    for run in ours:  # each trial's run is nested under the run of the worker that ran it
        parent = worker_runs[run.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags[PROCESS_TAG] == run.data.tags[PROCESS_TAG]


def test_a_search_on_two_dask_workers_trains_two_trials_at_once_and_runs_exactly_n_trials(project, tmp_path):
    name, trials = "on_dask", 6
    params = [f"search.study_name={name}", f"search.n_trials={trials}"]
    runner = "--runner=convbench.runner.DaskRunner"
    with dask_cluster.dask_cluster(tmp_path / "dask", cwd=project) as cluster:
        worker_pids = {process.pid for process in cluster.workers.values()}
        assert_ran(
            run_kedro(project, SEARCH, params, extra_args=(runner, f"--runner-params=address={cluster.address}"))
        )

    found = study_of(f"sqlite:///{project / DEFAULT_STUDY}", name).get_trials()
    assert sorted(trial.number for trial in found) == list(range(trials))
    states = [trial.state for trial in found]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED} and TrialState.PRUNED in states
    assert {int(trial.user_attrs[PROCESS_TAG].split(":")[1]) for trial in found} == worker_pids, (
        "both workers ran trials"
    )
    firsts = {}
    for trial in sorted(found, key=lambda trial: trial.number):
        firsts.setdefault(trial.user_attrs[PROCESS_TAG], trial.params)
    first_a, first_b = firsts.values()
    assert first_a != first_b, "each worker's sampler draws from its own seed (the same seed: the same first point)"
    spans = sorted((trial.datetime_start, trial.datetime_complete) for trial in found)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), "two trials ran at once"

    parents, trial_runs = search_runs(project)
    (parent,) = [run for run in parents if run.data.params.get("search.study_name") == name]
    ours = [run for run in trial_runs if run.data.tags["optuna.study"] == name]
    assert parent.info.status == "FINISHED"
    assert sorted(int(run.data.tags["optuna.trial_number"]) for run in ours) == list(range(trials))
    assert {run.data.tags["mlflow.parentRunId"] for run in ours} == {parent.info.run_id}
    assert all(run.info.status == "FINISHED" for run in ours)
