"""Helpers of the nightly tests: budgets, the emulators' ``/_emulator/`` endpoints, SuperOffice user state."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.flows.flowkit import Tenant

__all__ = ["WIDE", "Webhook", "active", "graph", "graph_stats", "serve_webhook", "so_reset_counters"]

#: Budgets the worked example stays within (4 changes, one of them a retirement).
WIDE = {"max_retire": "100%", "max_changes": 500, "min_source_users": 1, "max_source_drop": "20%"}


def graph(tenant: Tenant) -> httpx.Client:
    """An HTTPS client on the Graph emulator's origin (its ``/_emulator/`` endpoints need no auth)."""
    ctx = ssl.create_default_context(cafile=str(tenant.host.ca_bundle))
    return httpx.Client(base_url=tenant.host.graph_origin, verify=ctx, timeout=30)


def graph_stats(tenant: Tenant) -> dict[str, int]:
    """The Graph emulator's request counters since the last reset."""
    with graph(tenant) as c:
        return dict(c.get("/_emulator/stats").json())


def so_reset_counters(tenant: Tenant) -> None:
    """Zero the SuperOffice emulator's counters (``writes`` among them)."""
    ctx = ssl.create_default_context(cafile=str(tenant.host.ca_bundle))
    with httpx.Client(base_url=tenant.host.superoffice_origin, verify=ctx, timeout=30) as c:
        c.post("/_emulator/reset-counters").raise_for_status()


def active(tenant: Tenant, user_name: str) -> bool:
    """Whether the SuperOffice user with this UserName exists and is not retired."""
    users = tenant.users_by_name().get(user_name, [])
    return len(users) == 1 and not users[0]["Deleted"]


@dataclass
class Webhook:
    """A local HTTP receiver: where it listens and the JSON bodies posted to it."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def subjects(self) -> list[str]:
        return [str(b.get("subject")) for b in list(self.received)]

    def about(self, *needles: str) -> list[dict[str, Any]]:
        """The notifications whose subject or body mention every one of ``needles``."""
        return [m for m in list(self.received) if all(n in m["subject"] + "\n" + m["body"] for n in needles)]


@contextmanager
def serve_webhook() -> Iterator[Webhook]:
    """A webhook receiver on a free loopback port, for the block's duration."""
    hook = Webhook(url="")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.received.append(json.loads(body or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
