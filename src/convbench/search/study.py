"""An Optuna study that many workers share and that survives kills: storage, lock, trial claims and orphans.

- **Exact trial count.** A worker claims a trial under the study's lock: it counts the trials
  that are finished (COMPLETE, PRUNED) or running, and asks for a new one only if they are
  fewer than `n_trials`. So two workers never run trial `n_trials + 1`, and a rerun runs only
  what is missing. The lock is a file lock beside a sqlite study and a PostgreSQL advisory lock
  (or MySQL's `GET_LOCK`) for a server, so workers on other machines respect it too.
- **Kills.** Every trial records its process (`convbench.tracking.this_process`) and a heartbeat,
  written from a thread every quarter of `stale_after_s` while it trains (`heartbeat`). A RUNNING
  trial whose process is gone (same host) or whose heartbeat is older than `stale_after_s` (any
  host) is failed, and its parameters are queued again, so the rerun tries the same point. Failed
  trials are never counted: no trial is counted twice.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from convbench.tracking import PROCESS_TAG, process_is_gone, this_process

logger = logging.getLogger(__name__)

HEARTBEAT_ATTR = "convbench.heartbeat"
"""Trial user attribute: the Unix time of its last finished epoch (or of its start)."""

RETRY_OF_ATTR = "convbench.retry_of"
"""Trial user attribute of a queued retry: the number of the killed trial whose parameters it repeats."""

FAILED_BECAUSE_ATTR = "convbench.failed_because"
"""Trial user attribute of a trial failed for its worker: which worker died."""

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
"""Trials that count towards `n_trials`; failed ones do not."""


def storage_url(storage: str | None, default_sqlite: Path) -> str:
    """The study's RDB URL: `storage` (a relative sqlite path made absolute, `postgresql://` given the
    installed psycopg2 driver), or a sqlite file at `default_sqlite`."""
    if storage:
        if storage.startswith(("postgresql://", "postgres://")):  # SQLAlchemy 2.1 would pick psycopg 3
            return "postgresql+psycopg2://" + storage.split("://", 1)[1]
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return "sqlite:///" + str(Path(storage.removeprefix("sqlite:///")).resolve())
        return storage
    default_sqlite = Path(default_sqlite).resolve()
    default_sqlite.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{default_sqlite}"


def redacted(url: str) -> str:
    """`url` without its password, for logs and reports."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def make_sampler(config: dict[str, Any] | None, stream: int = 0) -> optuna.samplers.BaseSampler:
    """A TPE sampler from `search.sampler` (`seed`, `n_startup_trials`, ...: TPESampler's own options); with
    a seed, stream `k` draws from `seed + k`, so workers started together do not sample the same points."""
    config = dict(config or {})
    if config.get("seed") is not None:
        config["seed"] = int(config["seed"]) + stream
    return optuna.samplers.TPESampler(**config)


def make_pruner(config: dict[str, Any] | None, max_epochs: int) -> optuna.pruners.BasePruner:
    """The pruner of `search.pruner`: `{name: median, n_startup_trials, n_warmup_steps}` or
    `{name: hyperband, min_resource, reduction_factor}` (max_resource: the trial's epochs), or `{name: none}`."""
    config = dict(config or {"name": "median"})
    name = config.pop("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(**config)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(max_resource=max(1, max_epochs), **config)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"search.pruner.name must be median, hyperband or none; received {name!r}")


def open_study(
    url: str, study_name: str, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner
) -> optuna.Study:
    """The study `study_name` in `url`, created on first use (maximising validation accuracy).

    Opened under the study's lock: the first workers on a new database would otherwise create
    Optuna's tables at the same moment, and PostgreSQL refuses the second `CREATE TABLE` of a
    table being created (a unique violation in `pg_type`).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with study_lock(url, study_name):
        return optuna.create_study(
            storage=rdb_storage(url),
            study_name=study_name,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )


@functools.cache
def tell_once(study: optuna.Study, trial: optuna.Trial, value: float | None = None, *, state: TrialState) -> bool:
    """Tells `study` that `trial` ended in `state` (with `value` when COMPLETE), unless it has ended already:
    another worker fails a trial whose heartbeat it finds stale (a long pause of this host, a network
    cut; `fail_orphaned_trials`, which also queues it again). Then the trial keeps the state it has, a
    warning says so, and the search goes on. Whether this tell counted."""
    told = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True)
    ended_by_a_peer = FAILED_BECAUSE_ATTR in told.user_attrs
    if told.state == state and not ended_by_a_peer:
        return True
    logger.warning(
        "Trial %d had already been ended as %s by another worker (its heartbeat came too late): this worker's "
        "%s%s is not counted",
        trial.number,
        told.state.name,
        state.name,
        f" ({value})" if value is not None else "",
    )
    return False


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """The process's one Optuna storage of `url` (its engine and connection pool are shared)."""
    return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))


def trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial `number` of `study`, which the storage's setters take."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # workers wait for each other's writes instead of failing
    return {"pool_pre_ping": True}


@contextlib.contextmanager
def study_lock(url: str, study_name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Held by one worker of the study at a time, on any host that reaches the storage."""
    key = int.from_bytes(
        hashlib.blake2b(f"convbench:{study_name}".encode(), digest_size=8).digest(), "big", signed=True
    )
    if url.startswith("sqlite:///"):
        from filelock import FileLock

        path = Path(url.removeprefix("sqlite:///"))
        with FileLock(path.with_name(f".{path.name}.{key & 0xFFFFFFFF:08x}.lock"), timeout=timeout_s):
            yield
        return
    if url.startswith(("postgresql", "mysql")):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        postgres = url.startswith("postgresql")
        try:
            with engine.connect() as connection:
                if postgres:
                    connection.execute(sqlalchemy.text(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'"))
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                else:
                    got = connection.execute(
                        sqlalchemy.text("SELECT GET_LOCK(:name, :timeout)"), {"name": str(key), "timeout": timeout_s}
                    ).scalar()
                    if got != 1:
                        raise TimeoutError(f"Could not take the lock of study {study_name!r} in {timeout_s:g} s")
                connection.commit()
                try:
                    yield
                finally:
                    unlock = "SELECT pg_advisory_unlock(:key)" if postgres else "SELECT RELEASE_LOCK(:key)"
                    connection.execute(sqlalchemy.text(unlock), {"key": key if postgres else str(key)})
                    connection.commit()
        finally:
            engine.dispose()
        return
    logger.warning("No lock for %s storage: two workers may run one trial more than n_trials", url.split(":", 1)[0])
    yield


def fail_orphaned_trials(
    study: optuna.Study, storage: BaseStorage, stale_after_s: float, now: float | None = None
) -> list[int]:
    """Fails every RUNNING trial whose worker is gone and queues its parameters again; their numbers.

    Gone: its process no longer runs on this host, or (any host) its heartbeat is older than
    `stale_after_s`. Trials without convbench's attributes are left alone. Called under
    `study_lock`, so two workers never fail (and queue) the same trial twice.
    """
    now = time.time() if now is None else now
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        identity = trial.user_attrs.get(PROCESS_TAG)
        heartbeat = trial.user_attrs.get(HEARTBEAT_ATTR)
        if identity is None or heartbeat is None:
            continue
        if not (process_is_gone(identity) or now - float(heartbeat) > stale_after_s):
            continue
        try:
            storage.set_trial_user_attr(
                trial_id(storage, study, trial.number), FAILED_BECAUSE_ATTR, f"its worker ({identity}) died"
            )
        except UpdateFinishedTrialError:
            continue  # finished meanwhile
        if study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True).state != TrialState.FAIL:
            continue  # finished meanwhile
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number}, skip_if_exists=False)
        failed.append(trial.number)
        logger.warning(
            "Trial %d of study %s was left RUNNING by a dead worker: failed, queued again",
            trial.number,
            study.study_name,
        )
    return failed


HEARTBEATS_PER_STALE_PERIOD = 4
"""A running trial's heartbeat is written this many times per `stale_after_s`, so a late beat or two never fails it."""


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial, every_s: float) -> Iterator[None]:
    """Writes the trial's heartbeat (`HEARTBEAT_ATTR`) every `every_s` seconds from a thread while the block runs.

    Beating on a timer, not once per epoch, keeps a live worker's trial alive however long one epoch
    takes (a slow architecture's CPU epoch can take longer than `stale_after_s`)."""

    def beat() -> None:
        while not stopped.wait(every_s):
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:
                return  # told the study how it ended, an instant before the block's end
            except Exception as error:  # the storage may be out of reach for a while: the next beat tries again
                logger.warning("Heartbeat of trial %d not written: %s", trial.number, error)

    stopped = threading.Event()
    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()


def counted_trials(study: optuna.Study) -> int:
    """Trials that are finished (COMPLETE, PRUNED) or running: what a new claim is measured against."""
    return len(study.get_trials(deepcopy=False, states=(*COUNTED_STATES, TrialState.RUNNING)))


def claim_trial(study: optuna.Study, url: str, n_trials: int, stale_after_s: float) -> optuna.Trial | None:
    """A new trial for this worker, or None once the study has `n_trials` finished or running trials."""
    with study_lock(url, study.study_name):
        fail_orphaned_trials(study, rdb_storage(url), stale_after_s)
        if counted_trials(study) >= n_trials:
            return None
        trial = study.ask()
        trial.set_user_attr(PROCESS_TAG, this_process())
        trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        return trial
