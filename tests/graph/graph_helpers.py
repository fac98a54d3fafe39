"""Helpers for the Graph tests: serve an emulator over HTTPS, build configs, an independent membership oracle."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scimflow.config import EntraConfig
from scimflow.connectors.graph import clear_app_cache
from scimflow.emulators.graph import GraphEmulator, GraphEmulatorSettings
from scimflow.emulators.pki import TlsFiles
from scimflow.emulators.serve import serve_in_thread

SECRET_ENV = "SCIMFLOW_TEST_GRAPH_SECRET"
SECRET = "graph-test-secret-" + secrets.token_hex(12)


@dataclass
class Running:
    """A served emulator: the object (state, knobs) and its origin."""

    emulator: GraphEmulator
    origin: str
    ca: Path

    def knobs(self, **settings: Any) -> None:
        """Change settings through the HTTP knob, as an operator would."""
        with httpx.Client(verify=_ctx(self.ca), trust_env=False) as c:
            c.post(f"{self.origin}/_emulator/settings", json=settings).raise_for_status()

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(verify=_ctx(self.ca), trust_env=False) as c:
            r = c.request(method, f"{self.origin}{path}", **kwargs)
        r.raise_for_status()
        return r

    def stats(self) -> dict[str, int]:
        return self.admin("GET", "/_emulator/stats").json()

    def reset(self) -> None:
        self.admin("POST", "/_emulator/reset-counters")


def _ctx(ca: Path):
    from scimflow.connectors.http import ssl_context

    return ssl_context(ca)


@contextlib.contextmanager
def running(tls: TlsFiles, data: dict[str, Any], **settings: Any) -> Iterator[Running]:
    """Serve a fresh emulator over HTTPS for the duration of the block."""
    settings.setdefault("client_secret", SECRET)
    emulator = GraphEmulator(data, GraphEmulatorSettings(**settings))
    served = serve_in_thread(emulator.app, certfile=str(tls.server_cert), keyfile=str(tls.server_key))
    try:
        yield Running(emulator, served.origin, tls.ca_cert)
    finally:
        clear_app_cache()  # closes the msal apps' keep-alive connections, so the server stops at once
        served.stop()


def entra_config(run: Running, **overrides: Any) -> EntraConfig:
    """An EntraConfig pointing at ``run`` with the secret as an ``env:`` reference."""
    values: dict[str, Any] = {
        "tenant_id": run.emulator.settings.tenant_id,
        "client_id": run.emulator.settings.client_id,
        "client_secret": f"env:{SECRET_ENV}",
        "authority_host": run.origin,
        "graph_url": run.origin,
    }
    values.update(overrides)
    return EntraConfig(**values)


def transitive_groups(snapshot: dict[str, Any]) -> dict[str, set[str]]:
    """An independent oracle: user id -> ids of every group holding it directly or through nesting."""
    members = {g["id"]: g["members"] for g in snapshot["groups"]}
    users = {u["id"] for u in snapshot["users"]}
    out: dict[str, set[str]] = {u: set() for u in users}
    for root in members:
        stack, seen = [root], {root}
        while stack:
            for m in members.get(stack.pop(), []):
                if m in members and m not in seen:
                    seen.add(m)
                    stack.append(m)
                elif m in users:
                    out[m].add(root)
    return out
