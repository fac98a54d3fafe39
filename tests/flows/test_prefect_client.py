"""flows/prefect_client.py: a 503 from a locked Prefect server is sent again within milliseconds, not 2 s.

A real HTTP server on a loopback socket answers 503 (with Prefect's ``Retry-After: 2``) a set number of
times; the transport must resend the same request, body included, and give up after its delays.
The last test takes the tenant's apply slot on the session's real Prefect server through ``api_client``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from flows.prefect_client import LOCKED_RETRY_DELAYS, LockedServerRetry


class _Locked:
    """A server that answers 503 ``busy`` times, then 200 echoing what it was sent."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(body)
                if outer.busy > 0:
                    outer.busy -= 1
                    payload, status, extra = b'{"exception_message": "Service Unavailable"}', 503, {"Retry-After": "2"}
                else:
                    payload, status, extra = body, 200, {}
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(payload)), **extra}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def locked() -> Iterator[Any]:
    servers: list[_Locked] = []

    def make(busy: int) -> _Locked:
        servers.append(_Locked(busy))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_a_few_503s_are_sent_again_at_once_with_the_same_body(locked):
    server = locked(3)
    transport = LockedServerRetry(httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client:
        t0 = time.monotonic()
        response = client.post(server.url, json={"names": ["scimflow-tenant-x"], "slots": 1})
        took = time.monotonic() - t0
    assert response.status_code == 200
    assert json.loads(response.content) == {"names": ["scimflow-tenant-x"], "slots": 1}
    assert transport.retried == 3
    assert len(server.bodies) == 4 and len(set(server.bodies)) == 1  # the same request, body included
    assert took < sum(LOCKED_RETRY_DELAYS[:3]) + 1.0  # well under the 2 s the server's Retry-After asks for


def test_a_server_that_stays_locked_gets_its_503_back_after_the_delays(locked):
    server = locked(100)
    transport = LockedServerRetry(httpx.HTTPTransport(), delays=(0.0, 0.0, 0.0))
    with httpx.Client(transport=transport) as client:
        response = client.post(server.url, json={})
    assert response.status_code == 503  # handed to Prefect's own retries, which honour Retry-After
    assert transport.retried == 3
    assert len(server.bodies) == 4


def test_other_answers_are_not_retried(locked):
    server = locked(0)
    transport = LockedServerRetry(httpx.HTTPTransport())
    with httpx.Client(transport=transport) as client:
        assert client.post(server.url, json={"a": 1}).status_code == 200
    assert transport.retried == 0 and len(server.bodies) == 1


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_the_slot_is_taken_and_released_through_the_client_on_a_real_server():
    from prefect import flow

    from flows.prefect_client import api_client
    from flows.tenant_slot import limit_name, tenant_apply_slot

    tenant = f"client-{time.monotonic_ns()}"

    @flow
    def hold() -> int:
        with tenant_apply_slot(tenant), api_client() as client:
            return client.read_global_concurrency_limit_by_name(limit_name(tenant)).active_slots

    assert hold() == 1
    with api_client() as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(tenant)).active_slots == 0
