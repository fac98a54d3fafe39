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
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scimflow.commands.sync_cmd import LocalPrefectServer
from scimflow.emulators.serve import free_port

__all__ = ["configure_environment", "prefect_server"]

_HOME = Path(tempfile.mkdtemp(prefix="scimflow-test-prefect-"))
_PORT = free_port()


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
