"""Prefect's sync API client for the flows' own few writes, retrying a locked SQLite server quickly.

A Prefect server on SQLite (the default, and what ``scimflow sync`` starts) answers **503 with
``Retry-After: 2``** when its database is locked for a moment (PrefectHQ/prefect#8950): a write whose
transaction read before another writer committed fails at once with ``SQLITE_BUSY_SNAPSHOT``, which no
busy timeout waits out. That happens whenever a flow writes right after task runs finished, because the
server's task-run recorder is then inserting their states. Prefect's client honours the header, so
taking the tenant's apply slot cost 2 s in most runs (measured: 1.7-2.4 s of a 6 s apply at 1,000 users),
for a lock held a few milliseconds.

:func:`api_client` is Prefect's own client with one change below its retry loop: a transport that sends
a request again after 20 ms, 40 ms, ... (about 1.3 s in all) while the server answers 503, then hands the
last 503 to Prefect's usual retries. Only idempotent-by-design calls go through it (the slot's lease
calls, labels, states): each either took effect or was refused by the 503 as a whole (its transaction was
rolled back). TLS is verified exactly as Prefect's client would (``PREFECT_API_SSL_CERT_FILE`` or
certifi; skipped only where ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY`` says so).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager

import certifi
import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import (
    PREFECT_API_ENABLE_HTTP2,
    PREFECT_API_SSL_CERT_FILE,
    PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    PREFECT_API_URL,
)

__all__ = ["LOCKED_RETRY_DELAYS", "LockedServerRetry", "api_client"]

#: The pauses between sends while the server answers 503 (seconds): about 1.3 s in all, under the 2 s the
#: server's ``Retry-After`` asks for; after them Prefect's own retries take over.
LOCKED_RETRY_DELAYS = (0.02, 0.04, 0.08, 0.15, 0.3, 0.7)


def _tls_context() -> ssl.SSLContext:
    """The TLS context Prefect's client would build for its API (``SyncPrefectClient.__init__``)."""
    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():  # the user's explicit choice in Prefect's settings
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


class LockedServerRetry(httpx.BaseTransport):
    """Send again, after a short pause, a request the server answered 503 (its database was locked)."""

    def __init__(self, inner: httpx.BaseTransport, delays: tuple[float, ...] = LOCKED_RETRY_DELAYS) -> None:
        self._inner = inner
        self._delays = delays
        #: How many 503s this transport waited out (for the tests and the curious).
        self.retried = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for delay in self._delays:
            response = self._inner.handle_request(request)
            if response.status_code != 503:
                return response
            response.read()
            response.close()
            self.retried += 1
            time.sleep(delay)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@contextmanager
def api_client() -> Iterator[SyncPrefectClient]:
    """Prefect's sync client; against a server by URL, with :class:`LockedServerRetry` below its retries."""
    url = PREFECT_API_URL.value()
    if not url:  # an ephemeral in-process API: no HTTP transport to wrap
        with get_client(sync_client=True) as client:
            yield client
        return
    inner = httpx.HTTPTransport(verify=_tls_context(), http2=bool(PREFECT_API_ENABLE_HTTP2.value()), retries=3)
    with get_client(sync_client=True, httpx_settings={"transport": LockedServerRetry(inner)}) as client:
        yield client
