"""Flow tests: the session's Prefect server (tests/conftest.py), real emulators over HTTPS, a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flowkit import Tenant, worked_example_tenant

__all__: list[str] = []


@pytest.fixture
def worked_example(tmp_path: Path) -> Iterator[Tenant]:
    """The worked example (tests/fixtures) on fresh emulators, with wide guardrails."""
    with worked_example_tenant(tmp_path / "tenant") as tenant:
        yield tenant
