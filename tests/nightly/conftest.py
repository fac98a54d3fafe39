"""Fixtures of the nightly tests: the session Prefect server (shared with tests/flows), emulated tenants.

The environment is set here, at import, before any test imports prefect (see tests/prefect_server.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.flowkit import FIXTURES, Tenant, start_tenant, stop_tenant

from .nightkit import Webhook, serve_webhook

__all__ = ["RunningServer", "prefect_api", "tenant_factory", "webhook"]


@dataclass(frozen=True)
class RunningServer:
    """A Prefect server that answers on ``api_url`` (the session's, wherever it was started)."""

    api_url: str


@pytest.fixture(scope="package")
def prefect_api(prefect_server: Any) -> RunningServer:
    """The session's Prefect server (tests/conftest.py)."""
    return RunningServer(prefect_server.api_url)


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def worked_example_data() -> tuple[dict[str, Any], dict[str, Any]]:
    """The worked example's Graph and SuperOffice tenants (tests/fixtures)."""
    return json.loads((FIXTURES / "graph.json").read_text()), json.loads((FIXTURES / "superoffice.json").read_text())


@pytest.fixture
def tenant_factory(tmp_path: Path) -> Iterator[Callable[..., Tenant]]:
    """Start the worked example on fresh emulators: ``make(guardrails=..., state_url=...)``; stopped after."""
    started: list[Tenant] = []

    def make(**kwargs: Any) -> Tenant:
        graph, so = worked_example_data()
        kwargs.setdefault("rules", FIXTURES / "rules.yaml")
        tenant = start_tenant(tmp_path / f"tenant-{len(started)}", graph, so, **kwargs)
        started.append(tenant)
        return tenant

    yield make
    for tenant in started:
        stop_tenant(tenant)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook receiver on a free loopback port, for the test's duration (nightkit.serve_webhook)."""
    with serve_webhook() as hook:
        yield hook
