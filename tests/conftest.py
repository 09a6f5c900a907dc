"""Shared test setup: quiet TensorFlow, no telemetry, matplotlib without a display, a throw-away default
MLflow store, and a real PostgreSQL server for the tests that ask for one."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# MLFLOW_TRACKING_URI picks the tracking store of a `kedro run` (conf/base/mlflow.yml), and every
# `kedro run` child of the tests inherits this environment: none may be sent to a server named in
# the shell, nor away from `<project>/mlflow.db`, where the tests read their runs.
os.environ.pop("MLFLOW_TRACKING_URI", None)
THROWAWAY_TRACKING_URI = f"sqlite:///{tempfile.mkdtemp(prefix='convbench-mlflow-')}/mlflow.db"


@pytest.fixture(autouse=True, scope="session")
def throwaway_default_mlflow_store():
    """MLflow calls of the test process that name no store (e.g. after a test resets the URI) land in a
    throw-away store, never in ./mlflow.db of the checkout.

    Set as MLflow's default store, not through MLFLOW_TRACKING_URI: child processes would inherit the
    variable, and `mlflow.set_tracking_uri(None)` unsets it.
    """
    # mlflow 3.17 has no public setting of the store used when no URI is set (its private default is patched)
    from mlflow.tracking._tracking_service import utils

    assert hasattr(utils, "_get_default_tracking_uri"), "MLflow moved its default store: update tests/conftest.py"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_get_default_tracking_uri", lambda: THROWAWAY_TRACKING_URI)
        yield THROWAWAY_TRACKING_URI


@pytest.fixture(autouse=True)
def no_experiment_left_for_child_processes():
    """Unsets MLFLOW_EXPERIMENT_ID after each test.

    `mlflow.set_experiment` exports it so that child processes log to the same experiment
    (MLflow 3): a test's experiment id would otherwise reach the `kedro run`s and scripts that
    later tests start in this process, which then look for an experiment their store lacks.
    """
    yield
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


@pytest.fixture
def mlflow_run(tmp_path):
    """An active MLflow run in a sqlite store and artifact folder of the test's own."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    artifacts = (tmp_path / "artifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("test", artifact_location=artifacts))
    with mlflow.start_run() as run:
        yield run
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole session (tests/postgres.py): `create_database(name)` gives a
    new database's SQLAlchemy URL. Skips, saying why, where no server can be installed or started."""
    import postgres

    with postgres.running_server() as server:
        yield server


def pytest_collection_modifyitems(items):
    """End-to-end tests first, the rest after in their order.

    `make test` hands whole files to its two processes in collection order (`--dist loadfile
    --no-loadscope-reorder`): a file of several minutes of `kedro run`s then starts early, while the
    many short unit tests fill in around it, instead of starting last while the other process idles.
    """
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
