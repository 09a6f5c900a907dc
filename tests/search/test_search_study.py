"""Shared studies: storage URLs, pruners, trial claims under the lock with real processes, and dead workers."""

import json
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from convbench.search.study import (
    HEARTBEAT_ATTR,
    RETRY_OF_ATTR,
    claim_trial,
    fail_orphaned_trials,
    heartbeat,
    make_pruner,
    make_sampler,
    open_study,
    rdb_storage,
    redacted,
    storage_url,
    tell_once,
)
from convbench.tracking import PROCESS_TAG, this_process


def new_study(tmp_path, name="cifar10_mlp"):
    url = storage_url(None, tmp_path / "search" / "optuna.db")
    return url, open_study(url, name, optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner())


def running_trial(study, identity, heartbeat, x=0.5):
    study.enqueue_trial({"x": x}, skip_if_exists=False)
    trial = study.ask()
    assert trial.suggest_float("x", 0.0, 1.0) == x
    trial.set_user_attr(PROCESS_TAG, identity)
    trial.set_user_attr(HEARTBEAT_ATTR, heartbeat)
    return trial


def dead_identity():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return f"{this_process().split(':')[0]}:{dead.pid}:1"


def test_the_default_storage_is_an_absolute_sqlite_file_and_urls_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = storage_url(None, "data/06_models/cifar10/mlp/search/optuna.db")
    assert url == f"sqlite:///{tmp_path}/data/06_models/cifar10/mlp/search/optuna.db"
    assert (tmp_path / "data/06_models/cifar10/mlp/search").is_dir()
    assert storage_url("sqlite:///studies/a.db", "unused") == f"sqlite:///{tmp_path}/studies/a.db"
    assert storage_url("postgresql://bench@db:5432/optuna", "unused") == "postgresql+psycopg2://bench@db:5432/optuna"
    assert storage_url("mysql+pymysql://bench@db/optuna", "unused") == "mysql+pymysql://bench@db/optuna"


def test_passwords_never_reach_logs_or_reports():
    assert redacted("postgresql://bench:s3cret@db:5432/optuna") == "postgresql://bench:***@db:5432/optuna"
    assert redacted("postgresql://bench@db/optuna") == "postgresql://bench@db/optuna"
    assert redacted("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


def test_pruners_from_their_configuration():
    assert isinstance(make_pruner({"name": "median", "n_warmup_steps": 2}, 10), optuna.pruners.MedianPruner)
    hyperband = make_pruner({"name": "hyperband", "min_resource": 1, "reduction_factor": 3}, 12)
    # optuna 5.1 exposes no public accessor of a HyperbandPruner's max_resource
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner) and hyperband._max_resource == 12
    assert isinstance(make_pruner({"name": "none"}, 3), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match="median, hyperband or none; received 'asha'"):
        make_pruner({"name": "asha"}, 3)


def test_trials_of_dead_workers_fail_and_are_queued_again_and_live_ones_stay(tmp_path):
    url, study = new_study(tmp_path)
    now = time.time()
    dead = running_trial(study, dead_identity(), now, x=0.25)
    live = running_trial(study, this_process(), now)
    stale = running_trial(study, "another-host:123:1", now - 4000, x=0.75)
    fresh = running_trial(study, "another-host:124:1", now - 60)
    foreign = study.ask()  # not a convbench trial: no process, no heartbeat

    assert sorted(fail_orphaned_trials(study, rdb_storage(url), stale_after_s=1800, now=now)) == [
        dead.number,
        stale.number,
    ]
    states = {trial.number: trial.state for trial in study.get_trials()}
    assert states[dead.number] == states[stale.number] == TrialState.FAIL
    assert states[live.number] == states[fresh.number] == states[foreign.number] == TrialState.RUNNING
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert sorted((t.user_attrs[RETRY_OF_ATTR], t.system_attrs["fixed_params"]["x"]) for t in retries) == [
        (dead.number, 0.25),
        (stale.number, 0.75),
    ]
    assert fail_orphaned_trials(study, rdb_storage(url), stale_after_s=1800, now=now) == []  # each is failed once


def test_a_live_worker_whose_epoch_outlasts_stale_after_s_keeps_its_trial_by_its_heartbeat_thread(tmp_path):
    url, study = new_study(tmp_path)
    trial = running_trial(study, "another-host:125:1", time.time())  # only its heartbeat tells that it lives
    stale_after_s = 0.6
    with heartbeat(trial, every_s=stale_after_s / 4):
        time.sleep(2 * stale_after_s)  # one epoch, longer than stale_after_s, with no per-epoch beat
        assert fail_orphaned_trials(study, rdb_storage(url), stale_after_s) == []
    time.sleep(2 * stale_after_s)  # the worker is gone: no beat since
    assert fail_orphaned_trials(study, rdb_storage(url), stale_after_s) == [trial.number]


def test_a_heartbeat_stops_quietly_when_the_trial_has_ended(tmp_path, caplog):
    _, study = new_study(tmp_path)
    trial = running_trial(study, this_process(), time.time())
    with heartbeat(trial, every_s=0.05):
        study.tell(trial, 0.5)
        time.sleep(0.3)  # beats after the end find a finished trial
    assert study.trials[trial.number].state == TrialState.COMPLETE
    assert "Heartbeat" not in caplog.text


def test_a_rerun_after_a_kill_retries_the_killed_values_and_counts_no_trial_twice(tmp_path):
    url, study = new_study(tmp_path)
    for value in (0.1, 0.2):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, value)
    killed = running_trial(study, dead_identity(), time.time(), x=0.4)

    retry = claim_trial(study, url, n_trials=4, stale_after_s=1800)
    assert retry.user_attrs[RETRY_OF_ATTR] == killed.number
    assert retry.suggest_float("x", 0.0, 1.0) == 0.4  # the killed trial's value, fixed by the queue
    study.tell(retry, 0.3)
    last = claim_trial(study, url, n_trials=4, stale_after_s=1800)
    last.suggest_float("x", 0.0, 1.0)
    study.tell(last, 0.5)
    assert claim_trial(study, url, n_trials=4, stale_after_s=1800) is None
    states = [trial.state for trial in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1
    assert study.get_trials()[killed.number].state == TrialState.FAIL


WORKER = """
import json, sys, time, optuna
from convbench.search.study import claim_trial, open_study
url, n = sys.argv[1], int(sys.argv[2])
study = open_study(url, "shared", optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
ran = []
while (trial := claim_trial(study, url, n, 1800)) is not None:
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(0.15)
    study.tell(trial, x)
    ran.append(trial.number)
print(json.dumps(ran))
"""


def test_two_worker_processes_share_a_sqlite_study_and_run_exactly_n_trials(tmp_path):
    url = storage_url(None, tmp_path / "optuna.db")
    open_study(url, "shared", optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())  # created once
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, "10"], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    ran = [json.loads(worker.communicate(timeout=300)[0]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert all(ran), f"both workers ran trials: {ran}"
    assert sorted(ran[0] + ran[1]) == list(range(10))  # no number twice, none missing
    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    assert len(trials) == 10 and all(trial.state == TrialState.COMPLETE for trial in trials)


def test_workers_starting_together_on_a_new_postgresql_database_all_open_the_study(postgres_server):
    """Four workers open one study on a fresh database at the same moment, five times: without the
    study's lock around it, two of them create Optuna's tables at once and PostgreSQL refuses one."""
    import threading

    for attempt in range(5):
        url = postgres_server.create_database(f"optuna_together_{attempt}")
        start, errors, studies = threading.Barrier(4), [], []

        def worker(url=url, start=start, errors=errors, studies=studies):
            start.wait()
            try:
                studies.append(open_study(url, "together", make_sampler({"seed": 0}), make_pruner(None, 1)))
            except Exception as error:  # the failure this test is about, reported with its attempt
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, f"attempt {attempt}: {errors[0]!r}"
        assert len(studies) == 4 and optuna.get_all_study_names(url) == ["together"]


def test_a_trial_failed_by_a_peer_keeps_its_state_and_the_late_worker_goes_on(tmp_path, caplog):
    url, study = new_study(tmp_path)
    now = time.time()
    late = running_trial(study, "another-host:125:1", now - 4000, x=0.25)  # this host paused past stale_after_s
    on_time = running_trial(study, this_process(), now, x=0.5)
    assert fail_orphaned_trials(study, rdb_storage(url), stale_after_s=1800, now=now) == [late.number]

    assert tell_once(study, late, 0.9, state=TrialState.COMPLETE) is False  # no UpdateFinishedTrialError
    assert tell_once(study, late, state=TrialState.FAIL) is False  # its failure was the peer's, not this tell
    assert f"Trial {late.number} had already been ended as FAIL by another worker" in caplog.text
    assert tell_once(study, on_time, 0.7, state=TrialState.COMPLETE) is True
    trials = {trial.number: trial for trial in study.get_trials()}
    assert trials[late.number].state == TrialState.FAIL and trials[late.number].value is None
    assert trials[on_time.number].state == TrialState.COMPLETE and trials[on_time.number].value == 0.7
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1, "queued again once, by the peer"
