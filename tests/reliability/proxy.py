"""A tiny TLS-terminating HTTP/1.1 fault proxy: real sockets between scimflow and an emulator.

The client speaks TLS to the proxy (the emulator host's own loopback certificate, so verification stays
on); the proxy forwards each request upstream over a fresh TLS connection (``Connection: close``), reads
the whole answer, and then, when a :class:`Fault` matches, misbehaves at the socket level:

- ``status``: answer a canned error (``503``, or ``429`` with ``Retry-After``) instead of forwarding;
  with ``body``, that JSON error body instead of the canned one (e.g. Graph's ``syncStateNotFound``);
- ``drop``: forward, then send half of the answer and reset the connection (RST, no clean close);
- ``reset``: read the request and reset the connection before any byte of the answer;
- ``truncate``: cut the body in half and send it with a matching ``Content-Length`` (a well-framed
  answer whose JSON is broken, as a buggy or interrupted upstream would give);
- ``stall``: hold the answer for ``seconds`` (beyond the client's timeout) before sending it;
- ``empty_last``: a JSON page answered as ``{"value": []}`` without a next link (a page lost mid-paging);
- ``body``: the upstream's status and headers with ``body`` instead of its body (the bad-input corpus);
- ``call``: run ``action`` (e.g. revoke every token) before forwarding normally (expiry mid-run).

It also records every ``Authorization`` / ``SO-AppToken`` header value and every token a login or token
endpoint issued (``access_token``, ``Token``), so the security tests know exactly which credentials were
on the wire and can look for them everywhere else.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Fault", "FaultProxy"]

_KINDS = frozenset({"status", "drop", "reset", "truncate", "stall", "empty_last", "body", "call"})


@dataclass
class Fault:
    """Misbehave on requests whose ``METHOD path?query`` matches ``match`` (a regex), after ``skip`` of them pass."""

    kind: str
    match: str = r"."
    skip: int = 0
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    body: bytes | None = None
    action: Callable[[], object] | None = None
    hits: int = 0
    _seen: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            msg = f"unknown fault kind {self.kind!r}"
            raise ValueError(msg)

    def wants(self, line: str) -> bool:
        if not re.search(self.match, line):
            return False
        self._seen += 1
        if self._seen <= self.skip or self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class _Response:
    head: list[str]
    body: bytes

    def encode(self, body: bytes | None = None) -> bytes:
        body = self.body if body is None else body
        lines = [
            h for h in self.head if not h.lower().startswith(("content-length:", "transfer-encoding:", "connection:"))
        ]
        lines += [f"content-length: {len(body)}", "connection: keep-alive"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class FaultProxy:
    """Listen on ``127.0.0.1`` with ``certfile``/``keyfile``; forward to ``upstream`` (``https://host:port``)."""

    upstream: str
    certfile: Path
    keyfile: Path
    cafile: Path
    faults: list[Fault] = field(default_factory=list)
    credentials: set[str] = field(default_factory=set)
    requests: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self._up = (parts.hostname or "127.0.0.1", int(parts.port or 443))
        self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
        self._client_ctx = ssl.create_default_context(cafile=str(self.cafile))
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._stopped = threading.Event()
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def set_faults(self, *faults: Fault) -> None:
        with self._lock:
            self.faults = list(faults)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()
        self._thread.join(5)

    # ------------------------------------------------------------------ plumbing
    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self._server_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self._lock:
            self._conns.add(conn)
        reader = conn.makefile("rb")
        try:
            while not self._stopped.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                if not self._one(conn, *request):
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _pick(self, line: str) -> Fault | None:
        with self._lock:
            self.requests += 1
            for f in self.faults:
                if f.wants(line):
                    self.injected += 1
                    return f
        return None

    def _one(self, conn: ssl.SSLSocket, start: str, headers: list[tuple[str, str]], body: bytes) -> bool:
        """Answer one request; return False when the connection is to be dropped."""
        method, target, _ = start.split(" ", 2)
        for name, value in headers:
            if name.lower() in ("authorization", "so-apptoken"):
                self._remember(value.split(" ", 1)[-1] if name.lower() == "authorization" else value)
        fault = self._pick(f"{method} {target}")
        if fault is not None and fault.kind == "status":
            extra = [f"retry-after: {fault.retry_after}"] if fault.retry_after is not None else []
            resp = _Response(
                [f"HTTP/1.1 {fault.status} Injected", "content-type: application/json", *extra],
                fault.body
                or json.dumps(
                    {
                        "error": {"code": "injected", "message": "fault injected by the test proxy"},
                        "Error": "fault injected by the test proxy",
                        "ErrorType": "Injected",
                    }
                ).encode(),
            )
            conn.sendall(resp.encode())
            return True
        if fault is not None and fault.kind == "reset":
            _rst(conn)
            return False
        if fault is not None and fault.kind == "call" and fault.action is not None:
            fault.action()
            fault = None
        response = self._forward(start, headers, body)
        self._harvest(response.body)
        if fault is None:
            conn.sendall(response.encode())
            return True
        if fault.kind == "stall":
            time.sleep(fault.seconds)
            with contextlib.suppress(OSError):
                conn.sendall(response.encode())
            return False
        if fault.kind == "drop":
            data = response.encode()
            conn.sendall(data[: max(1, len(data) // 2)])
            _rst(conn)
            return False
        if fault.kind == "truncate":
            conn.sendall(response.encode(response.body[: len(response.body) // 2]))
            return True
        if fault.kind == "body" and fault.body is not None:
            conn.sendall(response.encode(fault.body))
            return True
        if fault.kind == "empty_last":
            conn.sendall(response.encode(b'{"value": []}'))
            return True
        conn.sendall(response.encode())  # pragma: no cover - every kind is handled above
        return True

    def _forward(self, start: str, headers: list[tuple[str, str]], body: bytes) -> _Response:
        up = socket.create_connection(self._up, timeout=120)
        with self._client_ctx.wrap_socket(up, server_hostname=self._up[0]) as s:
            lines = [start] + [f"{k}: {v}" for k, v in headers if k.lower() not in ("connection", "content-length")]
            lines += ["connection: close", f"content-length: {len(body)}"]
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            reader = s.makefile("rb")
            status = reader.readline().decode("latin-1").rstrip("\r\n")
            head = [status]
            length: int | None = None
            chunked = False
            while True:
                line = reader.readline().decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                head.append(line)
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                data = b""
                while True:
                    size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        reader.readline()
                        break
                    data += reader.read(size)
                    reader.readline()
            elif length is not None:
                data = reader.read(length)
            else:
                data = reader.read()
        return _Response(head, data)

    def _remember(self, value: str) -> None:
        value = value.strip()
        if len(value) >= 8:
            with self._lock:
                self.credentials.add(value)

    def _harvest(self, body: bytes) -> None:
        """Tokens a login or token endpoint issued (JSON ``access_token`` / ``Token`` / ``refresh_token``)."""
        if b"token" not in body.lower():
            return
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict):
            for key in ("access_token", "refresh_token", "id_token", "Token"):
                if isinstance(data.get(key), str):
                    self._remember(data[key])


def _read_request(reader) -> tuple[str, list[tuple[str, str]], bytes] | None:
    start = reader.readline()
    if not start:
        return None
    start_line = start.decode("latin-1").rstrip("\r\n")
    headers: list[tuple[str, str]] = []
    length = 0
    chunked = False
    while True:
        line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int(reader.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                reader.readline()
                break
            body += reader.read(size)
            reader.readline()
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
    else:
        body = reader.read(length) if length else b""
    return start_line, headers, body


def _rst(conn: ssl.SSLSocket) -> None:
    """Close with SO_LINGER 0: the peer sees a connection reset, not a clean end of stream."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()
