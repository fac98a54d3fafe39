"""Serve an ASGI app with uvicorn over HTTPS on a loopback port, in a background thread.

Used by ``scimflow emulate``, the demo and the tests (session-scoped servers over real sockets).
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from scimflow.netutil import free_port  # re-exported: the emulators' callers and tests use it from here

__all__ = ["TIMER_GRAIN", "DateHeader", "ServedApp", "answer_at", "free_port", "serve_in_thread", "wait_accepting"]


#: The event loop's timer granularity: uvloop (libuv) schedules timers in whole milliseconds and wakes up to
#: one millisecond past the deadline asked for.
TIMER_GRAIN = 0.001


async def answer_at(deadline: float) -> None:
    """Wait until ``deadline`` (``time.monotonic()``), centred on it within the loop's timer grain.

    A plain ``asyncio.sleep`` until the deadline wakes 0 to 1 ms late on a millisecond-grained loop, so an
    emulator meant to answer 20 ms after a request arrived would answer 20.5 ms after it on average (5% slow,
    and every bound measured against 20 ms would be off by as much). Aiming half a grain early centres the
    error: each answer leaves within half a millisecond of its deadline, and on average at it.
    """
    wait = deadline - time.monotonic() - TIMER_GRAIN / 2
    if wait > 0:
        await asyncio.sleep(wait)


class DateHeader:
    """ASGI middleware: a ``Date`` header from the emulator's own clock (now + ``offset()`` seconds).

    uvicorn's own ``Date`` is switched off in :func:`serve_in_thread`, so a test can give an emulator a
    clock that is off (``clock_offset``) and see what clients such as ``scimflow doctor`` make of it.
    """

    def __init__(self, app: Any, offset: Callable[[], float]) -> None:
        self.app = app
        self.offset = offset

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_date(message: Any) -> None:
            if message["type"] == "http.response.start":
                date = email.utils.formatdate(time.time() + self.offset(), usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, with_date)


def wait_accepting(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until ``host:port`` accepts a TCP connection, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                msg = f"{host}:{port} did not accept connections within {timeout:.0f} s"
                raise TimeoutError(msg) from None
            time.sleep(0.05)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread: leave signals to the main thread
        pass


@dataclass
class ServedApp:
    """A running server: its origin (``https://127.0.0.1:PORT``) and a ``stop()``."""

    host: str
    port: int
    server: Any = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(
    app: Any,
    *,
    certfile: str,
    keyfile: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_level: str = "warning",
) -> ServedApp:
    """Start ``app`` on ``host:port`` (a free port when ``None``) with TLS; return once it accepts connections."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        msg = f"emulators listen on loopback only, not {host!r}"
        raise ValueError(msg)
    port = port or free_port(host)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        backlog=2048,
        timeout_graceful_shutdown=1,
        date_header=False,  # each emulator sends its own Date (see DateHeader)
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name=f"emulator-{port}", daemon=True)
    thread.start()
    wait_accepting(host, port)
    return ServedApp(host=host, port=port, server=server, thread=thread)
