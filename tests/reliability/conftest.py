"""Reliability suite fixtures: the session's Prefect server (shared), a log capture for the secret scan,
and figures.json written when the package's tests end.

The environment is set at import, before anything imports prefect (as tests/flows/conftest.py does).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prefect_server import configure_environment

configure_environment()

from tests.reliability import harness  # noqa: E402 - after the environment is set
from tests.reliability.readme import write_section  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="package")
def shared_prefect() -> Iterator[str]:
    """The session's Prefect server: the one tests/flows started when it is up, else one for this package."""
    from scimflow.commands.sync_cmd import LocalPrefectServer
    from tests import prefect_server as ps

    url = os.environ["PREFECT_API_URL"]
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            up = r.status == 200
    except OSError:
        up = False
    if up:
        yield url
        return
    server = LocalPrefectServer.start(ps._HOME, ui=False, port=ps._PORT)
    try:
        server.wait_healthy(120)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="package", autouse=True)
def scanner() -> Iterator[harness.SecretScanner]:
    """Every log record of the package at DEBUG, kept for the secret scan; figures written at the end."""
    scan = harness.SecretScanner()
    scan.install()
    harness.SCANNER = scan
    try:
        yield scan
    finally:
        scan.uninstall()
        figures = harness.write_figures()
        write_section(figures)


@pytest.fixture(scope="session")
def worked_graph() -> dict:
    return json.loads((FIXTURES / "graph.json").read_text())


@pytest.fixture(scope="session")
def worked_so() -> dict:
    return json.loads((FIXTURES / "superoffice.json").read_text())
