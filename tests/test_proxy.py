"""Proxies: ``HTTPS_PROXY`` sends every connector through a CONNECT tunnel, ``NO_PROXY`` sends it direct."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.flows.flowkit import Tenant, worked_example_tenant

ROOT = Path(__file__).resolve().parents[1]
_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)


class ConnectProxy:
    """A tiny threaded HTTP CONNECT proxy on loopback that records each tunnel's ``host:port``."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.tunnels: list[str] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            with self._lock:
                self.tunnels.append(target)
            host, port = target.rsplit(":", 1)
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(client, upstream)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while True:
            ready, _, _ = select.select(list(peers), [], [], 30)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                peers[s].sendall(data)

    def stop(self) -> None:
        self._stopped = True
        self._server.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    """A CONNECT proxy for one test."""
    p = ConnectProxy()
    yield p
    p.stop()


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    """The worked example on both emulators."""
    with worked_example_tenant(tmp_path / "tenant") as t:
        yield t


def _plan(tenant: Tenant, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    cmd = [sys.executable, "-m", "scimflow", "plan", "--config", str(tenant.config), "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=180, env={**clean, **env})


def _hostport(origin: str) -> str:
    parts = urlsplit(origin)
    return f"{parts.hostname}:{parts.port}"


def test_a_plan_through_https_proxy_tunnels_to_both_emulators(
    tenant: Tenant, proxy: ConnectProxy, tmp_path: Path
) -> None:
    """With HTTPS_PROXY set, `scimflow plan` reaches Graph, its login and SuperOffice through CONNECT tunnels,
    verifying TLS against the config's CA bundle (SSL_CERT_FILE and REQUESTS_CA_BUNDLE are not read)."""
    missing = str(tmp_path / "no-such-bundle.pem")
    proc = _plan(tenant, tmp_path / "plan", HTTPS_PROXY=proxy.url, SSL_CERT_FILE=missing, REQUESTS_CA_BUNDLE=missing)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # the worked example has rows to look at
    seen = set(proxy.tunnels)
    assert _hostport(tenant.host.graph_origin) in seen
    assert _hostport(tenant.host.superoffice_origin) in seen
    assert seen <= {_hostport(tenant.host.graph_origin), _hostport(tenant.host.superoffice_origin)}


def test_no_proxy_sends_the_plan_direct(tenant: Tenant, proxy: ConnectProxy, tmp_path: Path) -> None:
    """With NO_PROXY covering the emulators' host, the same plan opens no tunnel at all."""
    proc = _plan(tenant, tmp_path / "plan", HTTPS_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proxy.tunnels == []


@pytest.mark.slow  # the retry layer tries the dead proxy for a while before giving up
def test_a_dead_proxy_fails_the_plan_with_a_clear_error(tenant: Tenant, tmp_path: Path) -> None:
    """A proxy that is not listening makes the plan fail (exit 1) instead of silently going direct."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    proc = _plan(tenant, tmp_path / "plan", HTTPS_PROXY=f"http://127.0.0.1:{port}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error" in (proc.stdout + proc.stderr).lower()


def _scimflow(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """`scimflow ARGS` in a child process with no proxy variable but those of ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    cmd = [sys.executable, "-m", "scimflow", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout, env={**clean, **env})


def test_an_apply_through_https_proxy_writes_superoffice_through_a_tunnel(
    tenant: Tenant, proxy: ConnectProxy, tmp_path: Path
) -> None:
    """`scimflow apply --direct` with HTTPS_PROXY set re-reads and writes SuperOffice through a CONNECT tunnel
    (it never reads Graph): exit 0, the writes landed, and a re-plan is empty."""
    import json

    out = tmp_path / "plan"
    assert _plan(tenant, out).returncode == 2
    plan_hash = json.loads((out / "summary.json").read_text())["plan_hash"]
    cfg = str(tenant.config)
    proc = _scimflow("apply", str(out), "--config", cfg, "--approve", plan_hash, "--direct", HTTPS_PROXY=proxy.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied 4," in proc.stdout
    assert set(proxy.tunnels) == {_hostport(tenant.host.superoffice_origin)}
    assert tenant.users_by_name()["sara.lind@contoso.com"][0]["Deleted"] is True
    assert _plan(tenant, tmp_path / "again").returncode == 0


@pytest.mark.prefect
def test_a_sync_through_https_proxy_reaches_both_emulators(
    tenant: Tenant, proxy: ConnectProxy, tmp_path: Path, prefect_server: object
) -> None:
    """`scimflow sync --approve` (a Prefect flow run) with HTTPS_PROXY set reaches Graph, its login and
    SuperOffice through CONNECT tunnels and applies the worked example (exit 0, a re-plan is empty); the only
    other tunnel is Prefect's own client's, to its server (docs/config.md says to list it in NO_PROXY)."""
    proc = _scimflow("sync", "--config", str(tenant.config), "--approve", HTTPS_PROXY=proxy.url)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    graph, so = _hostport(tenant.host.graph_origin), _hostport(tenant.host.superoffice_origin)
    seen = set(proxy.tunnels)
    assert {graph, so} <= seen
    assert seen - {graph, so} <= {_hostport(os.environ["PREFECT_API_URL"])}
    assert tenant.users_by_name()["kari.nordmann@contoso.com"][0]["Role"]["Value"] == "Manager"
    assert _plan(tenant, tmp_path / "again").returncode == 0
