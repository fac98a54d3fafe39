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
from tests.reliability.readme import write_section, writing_figures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="package")
def shared_prefect(prefect_server: Any) -> str:
    """The session's Prefect server (tests/conftest.py): its API URL."""
    return str(prefect_server.api_url)


_MODULES = (
    "test_bad_input.py",
    "test_crash.py",
    "test_faults.py",
    "test_delta_faults.py",
    "test_security.py",
    "test_hostile_rules.py",
    "test_forged_approval.py",
)


def _whole_suite(session: pytest.Session) -> bool:
    """True when every test of the package was selected (figures from a partial run would mislead)."""
    opts = session.config.option
    if getattr(opts, "keyword", "") or getattr(opts, "markexpr", "") or getattr(opts, "lf", False):
        return False
    here = Path(__file__).resolve().parent
    ran = {Path(str(item.path)).name for item in session.items if Path(str(item.path)).parent == here}
    return set(_MODULES) <= ran and not session.testsfailed


@pytest.fixture(scope="package", autouse=True)
def scanner(request: pytest.FixtureRequest) -> Iterator[harness.SecretScanner]:
    """Every log record of the package at DEBUG, kept for the secret scan; figures written at the end.

    The figures (figures.json and the README's Reliability section) are written only after a full,
    passing run of the whole package, and only by ``make figures`` (a test run changes no tracked file).
    """
    scan = harness.SecretScanner()
    scan.install()
    harness.SCANNER = scan
    try:
        yield scan
    finally:
        scan.uninstall()
        if writing_figures() and _whole_suite(request.session):
            write_section(harness.write_figures())


@pytest.fixture(scope="session")
def worked_graph() -> dict:
    return json.loads((FIXTURES / "graph.json").read_text())


@pytest.fixture(scope="session")
def worked_so() -> dict:
    return json.loads((FIXTURES / "superoffice.json").read_text())
