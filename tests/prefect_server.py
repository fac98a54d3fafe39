"""One real local Prefect server per test session (``prefect server start`` in a child process).

Why not ``prefect_test_harness``: it starts the same uvicorn subprocess, but its in-process settings
context does not reach the ``python -m flows.run`` child processes the CLI tests start; a plain server
on a known port serves both. Start-up takes 15-35 s on 2 cores (fresh SQLite), so it happens once per
process (once per pytest-xdist worker that runs a file needing it).

:func:`configure_environment` must run before anything imports prefect (``tests/flows/conftest.py`` calls
it at import time): the home is a temporary folder, telemetry is off, and ``PREFECT_API_URL`` names the
port the session server will use, so no test ever falls back to an ephemeral server.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scimflow.commands.sync_cmd import LocalPrefectServer
from scimflow.emulators.serve import free_port

__all__ = ["configure_environment", "prefect_server"]

_HOME = Path(tempfile.mkdtemp(prefix="scimflow-test-prefect-"))


def _server_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999), one block of 1,000 per pytest-xdist worker.

    The port is chosen at import and bound by the server only when the first test needs it, minutes later
    perhaps; a port from the ephemeral range (``free_port``) may by then be the local end of one of the
    many outgoing connections the other workers make, and the server would fail with "already in use".
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 20_000 + 1_000 * (int(worker) % 12 if worker.isdigit() else 0)
    for port in random.Random().sample(range(base, base + 1_000), 1_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


_PORT = _server_port()


def configure_environment() -> None:
    """Point this process (and its children) at the session server, before prefect is imported."""
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_HOME"] = str(_HOME)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PORT}/api"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    # The UI asks the server where its API is; unset, that is port 4200 (``--port`` does not change it).
    os.environ["PREFECT_SERVER_UI_API_URL"] = f"http://127.0.0.1:{_PORT}/api"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[LocalPrefectServer]:
    """A running Prefect server for the session (its API URL is already in ``PREFECT_API_URL``)."""
    server = LocalPrefectServer.start(_HOME, ui=True, port=_PORT, auth=False)  # the UI: tests/browser; open API
    try:
        server.wait_healthy(240)  # under pytest-xdist several workers start theirs at once
        yield server
    finally:
        server.stop()
        shutil.rmtree(_HOME, ignore_errors=True)
