"""Shared test setup: Prefect-free by default, retries fast, the worked example's fixtures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import stamina

FIXTURES = Path(__file__).parent / "fixtures"

# Before anything can import prefect: no telemetry, no ephemeral server, a private home, and the port
# of the ONE Prefect server this session starts (lazily, for the first test that asks for it).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from tests.pg import postgres_server, postgres_url  # noqa: E402 - one PostgreSQL server per session
from tests.prefect_server import configure_environment, prefect_server  # noqa: E402

configure_environment()

__all__ = ["postgres_server", "postgres_url", "prefect_server"]


@pytest.fixture(autouse=True, scope="session")
def _fast_retries():
    """Retries wait nothing in tests, but still happen (attempts are real)."""
    stamina.set_testing(True, attempts=8)
    yield
    stamina.set_testing(False)


@pytest.fixture(scope="session")
def graph_fixture() -> dict:
    """The worked example's Graph tenant (G.json)."""
    return json.loads((FIXTURES / "graph.json").read_text())


@pytest.fixture(scope="session")
def superoffice_fixture() -> dict:
    """The worked example's SuperOffice tenant (S.json)."""
    return json.loads((FIXTURES / "superoffice.json").read_text())


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop log records emitted at interpreter exit (pooled connections closing after pytest closed its streams).

    Without this, Prefect's console handler prints "Logging error ... I/O operation on closed file" after the
    test summary for httpcore's last DEBUG records; nothing is lost, the run is over.
    """
    import logging

    logging.raiseExceptions = False
