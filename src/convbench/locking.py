"""Who may touch a dataset's files at once: reader/writer locks per dataset and data folder, and who holds them.

A run that writes a dataset's arrays (its ingestion or preprocessing) holds that dataset's lock
alone; runs that only read them (a training filtered with `--tags=<arch>`, a search worker) share
it, so many of them train at once on prepared data, and none of them while the data is rewritten.
A run that trains an architecture also holds `<dataset>.<architecture>` alone, since it resumes
from and writes that architecture's checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from filelock import ReadWriteLock, Timeout

LOCK_WAIT_ENV = "CONVBENCH_LOCK_WAIT_S"
"""Seconds a run waits for another run of the same dataset to finish (default 0: fail at once)."""


class DatasetBusyError(RuntimeError):
    """Another `kedro run` holds a lock this run needs; the message names that process."""


def _holder() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


class DatasetLocks:
    """Locks on `<data_root>/.locks/<name>.lock`: exclusive for the names a run writes, shared for those it reads.

    The operating system releases a lock when its process dies (even by `kill -9`), so a killed
    run never blocks the next. Beside each lock, `<name>.owner.json` names the writer and
    `<name>.readers/<host>-<pid>.json` every reader, for the message of a refused run.
    """

    def __init__(
        self, data_root: Path, datasets: list[str], wait_s: float = 0.0, *, reads: list[str] | tuple = ()
    ) -> None:
        self.folder = Path(data_root) / ".locks"
        writes = set(datasets)
        self.modes = dict.fromkeys(writes, "write") | dict.fromkeys(set(reads) - writes, "read")
        self.wait_s = wait_s
        self._held: list[tuple[str, str, ReadWriteLock]] = []

    @property
    def datasets(self) -> list[str]:
        """The names locked, in the one order every run takes them in (two runs never wait on each other)."""
        return sorted(self.modes)

    def acquire(self) -> None:
        """Takes every lock, or raises `DatasetBusyError` (holding none) if one stays taken for `wait_s`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in self.datasets:
            mode = self.modes[name]
            lock = ReadWriteLock(self.folder / f"{name}.lock", is_singleton=False)
            try:
                (lock.acquire_write if mode == "write" else lock.acquire_read)(timeout=self.wait_s)
            except Timeout:
                lock.close()
                self.release()
                raise DatasetBusyError(self._busy_message(name, mode)) from None
            self._held.append((name, mode, lock))
            record = json.dumps(_holder())
            if mode == "write":
                (self.folder / f"{name}.owner.json").write_text(record)
            else:
                readers = self.folder / f"{name}.readers"
                readers.mkdir(exist_ok=True)
                (readers / f"{socket.gethostname()}-{os.getpid()}.json").write_text(record)

    def release(self) -> None:
        """Releases the locks this run holds."""
        while self._held:
            name, mode, lock = self._held.pop()
            if mode == "read":
                with contextlib.suppress(OSError):
                    (self.folder / f"{name}.readers" / f"{socket.gethostname()}-{os.getpid()}.json").unlink()
            lock.release()
            lock.close()

    def _holders(self, name: str) -> list[str]:
        files = [self.folder / f"{name}.owner.json", *sorted((self.folder / f"{name}.readers").glob("*.json"))]
        described = []
        for path in files:
            try:
                owner = json.loads(path.read_text())
                described.append(
                    f"process {owner['pid']} on {owner['host']} (`{owner['command']}`, since {owner['since']})"
                )
            except (OSError, ValueError, KeyError):
                continue
        return described

    def _busy_message(self, name: str, mode: str) -> str:
        holders = self._holders(name)
        if mode == "read":  # only a writer keeps readers out
            holders = holders[:1]
        who = " or ".join(holders) if holders else "another process"
        dataset, _, architecture = name.partition(".")
        what = f"the {architecture} checkpoints of {dataset}" if architecture else f"the {dataset} data"
        why = (
            "Two runs on one dataset would overwrite each other's arrays and checkpoints"
            if mode == "write" or architecture
            else "Its arrays are being rewritten"
        )
        return (
            f"Another kedro run is using {what} in {self.folder.parent}: {who}. {why}, so this one stops "
            f"(it waited for {self.wait_s:g} s). Wait for it to end, or set {LOCK_WAIT_ENV}=<seconds> to queue behind it. "
            f"Runs that only train on prepared data share it: `kedro run --pipelines=<dataset>_<arch> --tags=<arch>`."
        )
