"""Shared test setup: quiet TensorFlow, no telemetry, matplotlib without a display."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# MLflow calls made outside a test's own tracking store (e.g. after it resets the URI) land in a
# throwaway store, never in ./mlruns of the checkout.
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='convbench-mlflow-')}/mlflow.db")


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
