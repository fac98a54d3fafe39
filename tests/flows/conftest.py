"""Flow tests: one real Prefect server per session, real emulators over HTTPS, a real SQLite store.

The environment is set here, at import, before any test imports prefect (see tests/prefect_server.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prefect_server import configure_environment, prefect_server

configure_environment()

from flowkit import FIXTURES, WIDE, Tenant, start_tenant, stop_tenant  # noqa: E402 - after the environment is set

__all__ = ["prefect_server"]


@pytest.fixture
def worked_example(tmp_path: Path) -> Iterator[Tenant]:
    """The worked example (tests/fixtures) on fresh emulators, with wide guardrails."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    tenant = start_tenant(tmp_path / "tenant", graph, so, rules=FIXTURES / "rules.yaml", guardrails=WIDE)
    try:
        yield tenant
    finally:
        stop_tenant(tenant)
