"""Shared test setup: quiet TensorFlow, no telemetry, matplotlib without a display."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# MLflow calls made outside a test's own tracking store (e.g. after it resets the URI) land in a
# throwaway store, never in ./mlruns of the checkout.
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='convbench-mlflow-')}/mlflow.db")
