"""A real `dask.distributed` cluster on 127.0.0.1 for the tests: a `dask scheduler` process and `dask worker`
processes (without nannies, so a killed worker stays dead), each worker logging to its own file.

Import as ``import dask_cluster`` (``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distributed import Client
from kedro_project import kedro_env

DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    address: str
    workers: dict[str, subprocess.Popen]
    logs: dict[str, Path]

    def log(self, name: str) -> str:
        """What worker `name` has logged so far."""
        return self.logs[name].read_text(errors="replace")

    def addresses(self) -> dict[str, str]:
        """The address of each live worker, by name."""
        with Client(self.address, timeout=60) as client:
            return {worker["name"]: address for address, worker in client.scheduler_info()["workers"].items()}

    def kill(self, name: str) -> None:
        """Kills worker `name` with SIGKILL, as a lost machine would end it."""
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(timeout=30)


def _address_in(scheduler_file: Path, scheduler: subprocess.Popen, timeout: float = 60) -> str:
    """The scheduler's address, once its file is written whole."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            assert scheduler.poll() is None, f"{scheduler.args} exited with {scheduler.returncode}"
            assert time.monotonic() < deadline, f"{scheduler_file} was not written in {timeout} s"
            time.sleep(0.1)


@contextlib.contextmanager
def dask_cluster(folder: Path, cwd: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A scheduler and `workers` one-thread workers (`w0`, `w1`, ...) started in `cwd`, with `env`; stopped after."""
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    processes: list[subprocess.Popen] = []

    def start(command: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as stream:
            process = subprocess.Popen(
                command, cwd=cwd, env=kedro_env(env), stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
            )
        processes.append(process)
        return process

    try:
        scheduler_command = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        scheduler = start([*scheduler_command, "--scheduler-file", str(scheduler_file)], folder / "scheduler.log")
        address = _address_in(scheduler_file, scheduler)
        worker_command = [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        logs = {f"w{index}": folder / f"w{index}.log" for index in range(workers)}
        started = {
            name: start([*worker_command, "--name", name, "--host", "127.0.0.1"], log) for name, log in logs.items()
        }
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield Cluster(address, started, logs)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
