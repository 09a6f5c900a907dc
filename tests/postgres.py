"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a throw-away cluster in a
temporary folder, listening on 127.0.0.1 at a free port, stopped and removed after.

Import as ``import postgres`` (``tests/`` is on pytest's ``pythonpath``); tests take the session
fixture ``postgres_server`` (tests/conftest.py), one server for the whole session. `make test`
installs Debian's `postgresql` package where it can (the Makefile's `postgres` target). Where no
server can be found or started, the fixture skips its tests and says why.

PostgreSQL refuses to run as root: under root, `initdb` and `pg_ctl` run as the `postgres` system
user (Debian's package creates it), which owns the cluster's folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
"""The cluster's superuser (initdb -U) and, under root, the system user the server runs as."""
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "`make test` installs Debian's postgresql with apt-get where it can; or `apt-get install postgresql`"
SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",  # a throw-away cluster: speed over durability
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


@dataclass(frozen=True)
class PostgresServer:
    """A running server: `create_database(name)` gives the URL of a new, empty database on it."""

    port: int
    folder: Path
    """The cluster (`data/`), its unix socket and its log (`server.log`)."""
    host: str = HOST
    user: str = SUPERUSER

    def url(self, database: str, driver: str | None = "psycopg2") -> str:
        """The SQLAlchemy URL of `database` (`postgresql+psycopg2://...`), or the plain `postgresql://...`
        with `driver=None` (libpq's form; SQLAlchemy 2.1 reads it as psycopg 3, which is not installed, so
        MLflow and Optuna take the psycopg2 form)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        """A psycopg2 connection to `database`, as the superuser (trust authentication: no password)."""
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=database, connect_timeout=10)

    def create_database(self, name: str, driver: str | None = "psycopg2") -> str:
        """Creates the database `name` (an error if it exists) and returns its URL (`url(name, driver)`)."""
        from psycopg2 import sql

        connection = self.connect()
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            connection.close()
        return self.url(name, driver)


def binaries() -> Path:
    """The folder holding `initdb`, `pg_ctl` and `postgres`: from PATH (links followed), else the newest
    /usr/lib/postgresql/<version>/bin; or a skip saying that none is installed."""
    candidates = [
        Path(found).resolve().parent for found in filter(None, (shutil.which("initdb"), shutil.which("pg_ctl")))
    ]
    versions = [Path(folder) for folder in glob.glob(DEBIAN_BINARIES) if Path(folder).parent.name.isdigit()]
    candidates += sorted(versions, key=lambda folder: int(folder.parent.name), reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    pytest.skip(f"no PostgreSQL server found (initdb, pg_ctl in PATH or {DEBIAN_BINARIES}): {INSTALL_HINT}")


def server_account() -> pwd.struct_passwd | None:
    """The system user to run the server as: None (this user) unless this is root, then `postgres`,
    created with `useradd` if missing; or a skip saying why there is none."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip(
            f"PostgreSQL refuses to run as root, and there is no `{SUPERUSER}` user nor `useradd` to create one"
        )
    created = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SUPERUSER],
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        pytest.skip(f"PostgreSQL refuses to run as root, and `useradd {SUPERUSER}` failed: {created.stderr.strip()}")
    return pwd.getpwnam(SUPERUSER)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _run(command: list[str], folder: Path, account: pwd.struct_passwd | None, timeout: float = 120):
    """`command` in `folder`, as `account` when given (root only), with a plain C locale; its result."""
    as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "HOME": str(folder)}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, **as_user)


def _log_tail(folder: Path, result: subprocess.CompletedProcess) -> str:
    log = folder / "server.log"
    text = (result.stdout + result.stderr + (log.read_text(errors="replace") if log.exists() else "")).strip()
    return text[-1500:]


def _wait_until_ready(server: PostgresServer, timeout: float = 60) -> None:
    """Returns once the server accepts a connection and answers a query."""
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = server.connect()
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return
        finally:
            connection.close()


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A fresh cluster in a temporary folder, started on 127.0.0.1 at a free port (unix socket in that folder,
    trust authentication, fsync off); stopped and removed on exit. Skips, saying why, where it cannot start."""
    bindir = binaries()
    account = server_account()
    # tempfile's folder, not pytest's: pytest's is private to root, so the `postgres` user could not reach it.
    folder = Path(tempfile.mkdtemp(prefix="convbench-postgres-"))
    data = folder / "data"
    started = False
    try:
        if account:
            os.chown(folder, account.pw_uid, account.pw_gid)
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
        result = _run([*initdb, "--no-locale", "--no-sync"], folder, account)
        if result.returncode != 0:
            pytest.skip(f"PostgreSQL's initdb failed ({bindir}): {_log_tail(folder, result)}")
        base_conf = (data / "postgresql.conf").read_text()
        for _attempt in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            settings = {**SETTINGS, "port": str(port), "unix_socket_directories": f"'{folder}'"}
            lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
            (data / "postgresql.conf").write_text(f"{base_conf}\n# convbench tests\n{lines}")
            pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60"]
            result = _run([*pg_ctl, "start"], folder, account)
            if result.returncode == 0:
                started = True
                break
            if "Address already in use" not in _log_tail(folder, result):
                break
        if not started:
            pytest.skip(f"PostgreSQL did not start ({bindir}): {_log_tail(folder, result)}")
        server = PostgresServer(port=port, folder=folder)
        _wait_until_ready(server)
        yield server
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], folder, account)
        shutil.rmtree(folder, ignore_errors=True)
