"""`python -m convbench.serving <model_uri>`: a logged classifier served by `mlflow models serve`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def serve_command(
    model_uri: str, port: int, host: str = "127.0.0.1", workers: int = 1
) -> tuple[list[str], dict[str, str]]:
    """The `mlflow models serve` command for a logged classifier, and the environment to run it in.

    MLflow starts `uvicorn` by name, so the environment puts this interpreter's `bin` folder (the
    project's venv) first on PATH: serving then works from a shell where the venv is not activated.
    """
    bin_folder = str(Path(sys.executable).parent)
    command = [
        str(Path(bin_folder) / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--env-manager",
        "local",
    ]
    return command, {**os.environ, "PATH": os.pathsep.join([bin_folder, os.environ.get("PATH", "")])}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m convbench.serving <model_uri> [--port 5001] [--host 127.0.0.1] [--workers 1]`: serves a
    logged classifier with `mlflow models serve` (`serve_command`), from any shell; `make serve` runs it."""
    parser = argparse.ArgumentParser(prog="python -m convbench.serving", description=main.__doc__)
    parser.add_argument("model_uri", help="e.g. runs:/<run_id>/cifar10_resnet_classifier")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    command, env = serve_command(args.model_uri, args.port, args.host, args.workers)
    print(
        f"Serving {args.model_uri} at http://{args.host}:{args.port}/invocations (tracking store {env.get('MLFLOW_TRACKING_URI', 'MLflow default')})",
        flush=True,
    )
    os.execve(command[0], command, env)
