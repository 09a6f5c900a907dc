"""One `kedro run` per dataset and data folder at a time: a file lock, and who holds it."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_WAIT_ENV = "CONVBENCH_LOCK_WAIT_S"
"""Seconds a run waits for another run of the same dataset to finish (default 0: fail at once)."""


class DatasetBusyError(RuntimeError):
    """Another `kedro run` holds the lock of a dataset this run writes; the message names that process."""


class DatasetLocks:
    """Exclusive locks on `<data_root>/.locks/<dataset>.lock`, one per dataset a run touches.

    The operating system releases a lock when its process dies (even by `kill -9`), so a killed
    run never blocks the next. Beside each lock, `<dataset>.owner.json` says who holds it.
    """

    def __init__(self, data_root: Path, datasets: list[str], wait_s: float = 0.0) -> None:
        self.folder = Path(data_root) / ".locks"
        self.datasets = sorted(set(datasets))  # always the same order: two runs never wait on each other
        self.wait_s = wait_s
        self._held: list[FileLock] = []

    def acquire(self) -> None:
        """Takes every lock, or raises `DatasetBusyError` (holding none) if one stays taken for `wait_s`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for dataset in self.datasets:
            lock = FileLock(self.folder / f"{dataset}.lock")
            try:
                lock.acquire(timeout=self.wait_s)
            except Timeout:
                self.release()
                raise DatasetBusyError(self._busy_message(dataset)) from None
            self._held.append(lock)
            owner = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            }
            (self.folder / f"{dataset}.owner.json").write_text(json.dumps(owner))

    def release(self) -> None:
        """Releases the locks this run holds."""
        while self._held:
            self._held.pop().release()

    def _busy_message(self, dataset: str) -> str:
        try:
            owner = json.loads((self.folder / f"{dataset}.owner.json").read_text())
            who = f"process {owner['pid']} on {owner['host']} (`{owner['command']}`, since {owner['since']})"
        except (OSError, ValueError, KeyError):
            who = "another process"
        waited = f" for {self.wait_s:g} s" if self.wait_s else ""
        return (
            f"Another kedro run is using the {dataset} data in {self.folder.parent}: {who}. Two runs on one "
            f"dataset would overwrite each other's arrays and checkpoints, so this one stops (it waited{waited or ' 0 s'}). "
            f"Wait for it to end, or set {LOCK_WAIT_ENV}=<seconds> to queue behind it."
        )
