"""A throw-away PostgreSQL server for tests, from the Debian binaries (``/usr/lib/postgresql/*/bin``).

The root ``tests/conftest.py`` provides both fixtures to every test, so the session has one server.
``postgres_server`` (session) runs ``initdb`` and ``pg_ctl start`` on a free loopback port with its unix
socket in a temporary folder; PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (or ``nobody``) through ``runuser``. ``postgres_url`` (per test) is a fresh, empty
database on it. Both skip, saying why, only when no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "postgres_url"]


def find_pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``, if any."""
    candidates = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            try:
                candidates.append((int(d.parent.name), d))
            except ValueError:
                continue
    return max(candidates)[1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: where it listens and how to reach it as the superuser ``postgres``."""

    port: int
    folder: Path
    run_as: list[str]
    bin: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database; return its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


def _run_as() -> tuple[list[str], int | None]:
    """The command prefix to run PostgreSQL as a non-root user, and that user's uid (``None``: as we are)."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    for user in ("postgres", "nobody"):
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            continue
        if runuser:
            return [runuser, "-u", user, "--"], uid
    pytest.skip("running as root and neither runuser nor a postgres/nobody user is available to run PostgreSQL")
    raise AssertionError  # unreachable; pytest.skip raises


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, started from the Debian binaries and removed after."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    run_as, uid = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="scimflow-pg-"))
    if uid is not None:
        os.chown(folder, uid, -1)
    port = _free_port()
    server = PostgresServer(port=port, folder=folder, run_as=run_as, bin=pg_bin)
    init = subprocess.run(
        [
            *run_as,
            str(pg_bin / "initdb"),
            "-D",
            str(folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    start = server.pg_ctl("-o", opts, "-l", str(folder / "server.log"), "-w", "-t", "60", "start")
    if start.returncode != 0:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {start.stderr.strip()}\n{log}")
    try:
        yield server
    finally:
        server.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://``) of a fresh, empty database on the session server."""
    return postgres_server.url(postgres_server.create_database())
