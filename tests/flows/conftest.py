"""Flow tests: the session's Prefect server (tests/conftest.py), real emulators over HTTPS, a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowkit import FIXTURES, WIDE, Tenant, start_tenant, stop_tenant

__all__: list[str] = []


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
