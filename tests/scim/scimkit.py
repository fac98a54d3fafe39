"""Start the SCIM emulator over HTTPS on loopback for tests (like tests/flows/flowkit.py's start_tenant).

server = start_scim(tmp_path, dialect="entra")          # empty; or data={"users": [...], "groups": [...]}
with server.client() as c:                               # httpx, TLS verified, bearer token set
    c.get("Users", params={"filter": 'userName eq "a@b"'})
server.snapshot()                                        # {"users": [...], "groups": [...]}
server.stop()
"""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scimflow.emulators.pki import TlsFiles, make_tls_files
from scimflow.emulators.scim import SCIM_PATH, ScimEmulator, ScimEmulatorSettings
from scimflow.emulators.serve import ServedApp, serve_in_thread

__all__ = ["ScimServer", "start_scim"]


@dataclass
class ScimServer:
    """A running SCIM emulator: its object, origin, SCIM base URL, token and CA file."""

    emulator: ScimEmulator
    served: ServedApp = field(repr=False)
    token: str = field(repr=False)
    ca_bundle: Path

    @property
    def origin(self) -> str:
        """``https://127.0.0.1:PORT`` (``/_emulator/*`` lives here)."""
        return self.served.origin

    @property
    def base_url(self) -> str:
        """The SCIM base URL (a config's ``scim.base_url``): ``origin + /scim/v2``."""
        return self.served.origin + SCIM_PATH

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the emulator's CA (verification on)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def client(self, *, token: str | None = "", **kwargs: Any) -> httpx.Client:
        """An httpx client on :attr:`base_url` (trailing slash) with the bearer token (``token=None``: none)."""
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(
            base_url=self.base_url + "/", headers=headers, verify=self.ssl_context(), timeout=30, **kwargs
        )

    def admin(self) -> httpx.Client:
        """An httpx client on the origin, for ``/_emulator/*``."""
        return httpx.Client(base_url=self.origin, verify=self.ssl_context(), timeout=30)

    def snapshot(self) -> dict[str, Any]:
        """``GET /_emulator/snapshot`` over the socket."""
        with self.admin() as c:
            r = c.get("/_emulator/snapshot")
            r.raise_for_status()
            return dict(r.json())

    def settings(self, **values: Any) -> dict[str, Any]:
        """``POST /_emulator/settings`` over the socket; returns the settings now in force."""
        with self.admin() as c:
            r = c.post("/_emulator/settings", json=values)
            r.raise_for_status()
            return dict(r.json())

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats`` over the socket."""
        with self.admin() as c:
            return dict(c.get("/_emulator/stats").json())

    def stop(self) -> None:
        """Stop the server."""
        self.served.stop()


def start_scim(
    folder: Path,
    data: dict[str, Any] | None = None,
    *,
    dialect: str = "rfc",
    tls: TlsFiles | None = None,
    **settings: Any,
) -> ScimServer:
    """Serve a :class:`ScimEmulator` over HTTPS on a free loopback port (CA and key in ``folder`` unless ``tls``)."""
    tls = tls or make_tls_files(folder)
    token = settings.pop("token", None) or secrets.token_urlsafe(24)
    emulator = ScimEmulator(data or {}, ScimEmulatorSettings(dialect=dialect, token=token, **settings))  # type: ignore[arg-type]
    served = serve_in_thread(emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key))
    return ScimServer(emulator=emulator, served=served, token=token, ca_bundle=tls.ca_cert)
