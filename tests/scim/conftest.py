"""Fixtures of the SCIM tests: the SCIM emulator over HTTPS on loopback, per test, for each policy.

- ``scim_tls``: one CA and server certificate for the session (``TlsFiles``).
- ``scim_rfc``: a running, empty :class:`tests.scim.scimkit.ScimServer` under the strict policy (``dialect: rfc``).
- ``scim_entra``: the same under the Entra-tolerant policy (``dialect: entra``).
- ``scim_server``: parametrized over both (``request.param`` is the dialect; ``scim_server.emulator.settings.dialect``).
Start one with other data or settings with ``tests.scim.scimkit.start_scim(folder, data, dialect=..., tls=scim_tls)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scimflow.emulators.pki import TlsFiles, make_tls_files
from tests.scim.scimkit import ScimServer, start_scim


@pytest.fixture(scope="session")
def scim_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a loopback server certificate shared by the session's SCIM emulators."""
    return make_tls_files(Path(tmp_path_factory.mktemp("scim-tls")))


@pytest.fixture
def scim_rfc(tmp_path: Path, scim_tls: TlsFiles) -> Iterator[ScimServer]:
    """An empty SCIM emulator under the strict (rfc) policy, over HTTPS."""
    server = start_scim(tmp_path, dialect="rfc", tls=scim_tls)
    yield server
    server.stop()


@pytest.fixture
def scim_entra(tmp_path: Path, scim_tls: TlsFiles) -> Iterator[ScimServer]:
    """An empty SCIM emulator under the Entra-tolerant policy, over HTTPS."""
    server = start_scim(tmp_path, dialect="entra", tls=scim_tls)
    yield server
    server.stop()


@pytest.fixture(params=["rfc", "entra"])
def scim_server(request: pytest.FixtureRequest, tmp_path: Path, scim_tls: TlsFiles) -> Iterator[ScimServer]:
    """An empty SCIM emulator under each policy in turn (the param is the dialect)."""
    server = start_scim(tmp_path, dialect=request.param, tls=scim_tls)
    yield server
    server.stop()
