"""Graph test fixtures: a throw-away CA, emulators served over real HTTPS sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graph_helpers import SECRET, SECRET_ENV, Running, running

from scimflow.emulators.graph import generate_tenant
from scimflow.emulators.pki import TlsFiles, make_tls_files


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and loopback server certificate shared by every Graph emulator in the session."""
    return make_tls_files(tmp_path_factory.mktemp("graph-tls"))


@pytest.fixture(autouse=True)
def _graph_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client secret reaches the connector through the environment, as in production."""
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture(scope="module")
def tenant25(tls: TlsFiles) -> Iterator[Running]:
    """A generated tenant of 25 users in 6 groups (group 5 nested in group 4), read-only for its module."""
    with running(tls, generate_tenant(25, 6, seed=7)) as run:
        yield run


@pytest.fixture(scope="module")
def example(tls: TlsFiles, graph_fixture: dict[str, Any]) -> Iterator[Running]:
    """The worked example's tenant (Sales Oslo nested in SO Sales), read-only for its module."""
    with running(tls, graph_fixture) as run:
        yield run
