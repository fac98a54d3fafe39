"""Security: no secret or issued token anywhere the suite can see, TLS verification on, loopback only, 0600 files.

This module runs last in the package (file order), so its scan covers what the other modules produced as
well: every log record at DEBUG, exception tracebacks, child process output, every file in the rigs'
folders (plan files, state databases, configs) and the Prefect server's artifacts and flow-run logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from scimflow.connectors.errors import ConnectorError
from tests.reliability import harness
from tests.reliability.harness import FIGURES, WIDE, Fault, rig


def _prefect(path: str, body: dict) -> list[dict]:
    url = os.environ["PREFECT_API_URL"].rstrip("/") + path
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return list(json.loads(r.read()))


@pytest.mark.prefect
@pytest.mark.usefixtures("shared_prefect")
def test_no_secret_or_token_in_logs_artifacts_plans_or_exceptions(tmp_path: Path, worked_graph, worked_so) -> None:
    """Configured secrets, key material and every token or ticket seen on the wire appear in no text the suite saw."""
    scan = harness.SCANNER
    with rig(tmp_path / "tenant", worked_graph, worked_so, guardrails=WIDE) as r:
        r.plan(tmp_path / "plan")  # a clean run: tokens and tickets issued
        r.faults(
            graph=[Fault("call", r"^GET /v1\.0/users\?", action=r.host.graph.revoke_tokens)],
            so=[Fault("status", r"^GET /Cust12345/api/v1/User\?", status=500, times=10_000)],
        )
        with pytest.raises(ConnectorError) as info:  # a failing run: its exception is scanned too
            r.plan(tmp_path / "failed")
        harness.TEXTS.append(("security: failed run", "".join(__import__("traceback").format_exception(info.value))))
        r.faults()
        assert any(c.startswith("7T:") for c in r.so_proxy.credentials), "no ticket was captured on the wire"
        assert r.graph_proxy.credentials, "no access token was captured on the wire"
    for folder in harness.SCANNED_FOLDERS:
        FIGURES["texts_scanned"] += scan.add_tree(folder)
    for where, text in harness.TEXTS:
        scan.add(where, text)
    artifacts = _prefect("/artifacts/filter", {"limit": 200})
    logs = _prefect("/logs/filter", {"limit": 200})
    for a in artifacts:
        scan.add(f"prefect artifact {a.get('key')}", json.dumps(a))
    scan.add("prefect logs", json.dumps(logs))
    FIGURES["texts_scanned"] += len(harness.TEXTS) + len(artifacts) + len(logs) + len(scan.handler.lines)
    secrets = set(harness.SECRETS)
    FIGURES["secrets_tracked"] = len(secrets)
    leaks = scan.leaks(secrets)
    FIGURES["leaks"] = len(leaks)
    assert len(secrets) >= 6
    assert leaks == [], leaks


def test_scanner_finds_a_planted_secret() -> None:
    """The scan itself fails when a token is in a log line, a file or a traceback (so a clean scan means something)."""
    scan = harness.SecretScanner()
    scan.add("a traceback", "AuthError: refused for Bearer eyJhbGciOi.payload.signature-xyz-123")
    scan.add("plan.jsonl", '{"key": "-----BEGIN PRIVATE KEY-----"}')
    assert len(scan.leaks({"eyJhbGciOi.payload.signature-xyz-123"})) == 2


def test_untrusted_certificate_is_refused(tmp_path: Path, worked_graph, worked_so) -> None:
    """With a CA bundle that did not issue the emulators' certificate, the extract fails at the TLS handshake."""
    import yaml

    from scimflow.emulators.pki import make_tls_files

    other = make_tls_files(tmp_path / "other-ca")
    with rig(tmp_path / "tenant", worked_graph, worked_so, guardrails=WIDE) as r:
        data = yaml.safe_load(r.config.read_text())
        data["ca_bundle"] = str(other.ca_cert)
        r.config.write_text(yaml.safe_dump(data))
        before = r.graph_proxy.requests + r.so_proxy.requests
        with pytest.raises(ConnectorError, match="not trusted") as info:
            r.plan(tmp_path / "plan")
        harness.TEXTS.append(("untrusted", str(info.value)))
        assert r.graph_proxy.requests + r.so_proxy.requests == before, "a request went out over an untrusted channel"


def test_emulators_listen_on_loopback_only(tmp_path: Path, worked_graph, worked_so) -> None:
    """Both emulators bind 127.0.0.1: no other address of this machine reaches them, and 0.0.0.0 is refused."""
    from scimflow.emulators.serve import serve_in_thread

    with rig(tmp_path / "tenant", worked_graph, worked_so, guardrails=WIDE) as r:
        for origin in (r.host.graph_origin, r.host.superoffice_origin):
            host, port = origin.removeprefix("https://").rsplit(":", 1)
            assert host == "127.0.0.1"
            for address in _other_addresses():
                with pytest.raises(OSError), socket.create_connection((address, int(port)), timeout=1):
                    pass
    with pytest.raises(ValueError, match="loopback"):
        serve_in_thread(object(), certfile="x", keyfile="y", host="0.0.0.0")


def _other_addresses() -> list[str]:
    found: set[str] = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            found.add(s.getsockname()[0])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        found |= {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    return sorted(a for a in found if not a.startswith("127."))


def test_state_database_and_plan_files_are_owner_only(tmp_path: Path, worked_graph, worked_so) -> None:
    """Even under a permissive umask, the state database and every plan file are created 0600 (folders 0700)."""
    old = os.umask(0)
    try:
        with rig(tmp_path / "tenant", worked_graph, worked_so, guardrails=WIDE) as r:
            r.plan(tmp_path / "plan")
            state = r.folder / ".scimflow" / "state.db"
    finally:
        os.umask(old)
    assert state.stat().st_mode & 0o777 == 0o600
    for name in ("plan.jsonl", "summary.json", "plan.parquet"):
        assert (tmp_path / "plan" / name).stat().st_mode & 0o777 == 0o600, name
    assert (tmp_path / "plan").stat().st_mode & 0o777 == 0o700
