"""A throw-away copy of this Kedro project for end-to-end runs, and the `kedro` command to run in it.

Import as ``import kedro_project`` (``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""For `mlflow ui` and `mlflow server` in the tests: without MLflow's job runner (GenAI jobs, unused here),
whose eight more processes would take the CPU."""


def new_project(tmp_path_factory) -> Path:
    """A fresh project folder: pyproject.toml, conf/ (without local settings), src/ and notebooks/ of this
    repository, no data."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks")
    shutil.copytree(PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials*"))
    for leftover in (root / "conf" / "local").glob("*.yml"):
        leftover.unlink()
    return root


PLAIN_LOGGING = """
version: 1
disable_existing_loggers: false
formatters: {plain: {format: "%(levelname)s %(name)s: %(message)s"}}
handlers: {console: {class: logging.StreamHandler, formatter: plain, stream: ext://sys.stdout}}
loggers: {kedro: {level: INFO}, convbench: {level: INFO}}
root: {handlers: [console], level: WARNING}
"""


def plain_logging(project: Path) -> dict[str, str]:
    """The environment variable that gives `kedro` commands in `project` one unwrapped line per log message (on
    stdout), so messages can be matched."""
    (project / "plain_logging.yml").write_text(PLAIN_LOGGING)
    return {"KEDRO_LOGGING_CONFIG": str(project / "plain_logging.yml")}


def kedro_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `kedro` child process: this one's, plus `env`, without `MLFLOW_TRACKING_URI`
    and `MLFLOW_EXPERIMENT_ID` unless `env` names them.

    The first picks a run's tracking store (conf/base/mlflow.yml); inherited, it would send the
    run away from `<project>/mlflow.db`, where the tests read it. The second, which
    `mlflow.set_experiment` exports, names an experiment of another store.
    """
    unset = {"MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"}
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    return {**inherited, **(env or {})}


def run_kedro(
    project: Path,
    pipeline_flag: str,
    params: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: int = 900,
    extra_args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`kedro run <pipeline_flag> --env=smoke [extra_args] --params=...` in `project`, in `kedro_env(env)`; the
    result, whatever its exit status."""
    return subprocess.run(
        kedro_command(pipeline_flag, params, extra_args),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kedro_env(env),
    )


def kedro_command(pipeline_flag: str, params: list[str], extra_args: tuple[str, ...] = ()) -> list[str]:
    """`kedro run <pipeline_flag> --env=smoke [extra_args] --params=...` as an argument list."""
    return [
        str(KEDRO),
        "run",
        pipeline_flag,
        "--env=smoke",
        *extra_args,
        *([f"--params={','.join(params)}"] if params else []),
    ]


def assert_ran(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """`result`, after asserting that it exited with 0 (the failure shows the command's output)."""
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result


@contextlib.contextmanager
def mlflow_ui(project: Path) -> Iterator[str]:
    """`mlflow ui --backend-store-uri sqlite:///mlflow.db` started in `project` on a free port of 127.0.0.1,
    once it answers `/health`; its base URL. Stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(KEDRO.with_name("mlflow")), "ui", "--backend-store-uri", "sqlite:///mlflow.db"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=kedro_env(MLFLOW_SERVER_ENV),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
