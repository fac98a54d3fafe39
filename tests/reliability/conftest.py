"""Reliability suite fixtures: the session's Prefect server (shared), a log capture for the secret scan,
and figures.json written when the package's tests end.

The environment is set at import, before anything imports prefect (as tests/flows/conftest.py does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import harness
from tests.reliability.readme import write_section

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="package")
def shared_prefect(prefect_server: Any) -> str:
    """The session's Prefect server (tests/conftest.py): its API URL."""
    return str(prefect_server.api_url)


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
