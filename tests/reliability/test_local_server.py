"""The local Prefect server scimflow starts, attacked from the same machine: no auth string, a foreign origin.

Whoever can resume a paused run can approve a plan, so the server ``scimflow sync`` and ``demo`` start
(:meth:`LocalPrefectServer.start`, the very function they call) must refuse API calls without its random
auth string, must not let a web page of another origin call it from a local browser, and must keep its
database (previews with names and e-mails, approval inputs) owner-only.
"""

from __future__ import annotations

import base64
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scimflow.commands.sync_cmd import LocalPrefectServer

pytestmark = [pytest.mark.slow]

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefectServer]:
    """A local server started as ``scimflow sync`` starts it, in a home left 0755 with a 0644 database."""
    home = tmp_path_factory.mktemp("local-server") / ".scimflow" / "prefect"
    home.mkdir(parents=True)
    home.chmod(0o755)
    (home / "prefect.db").touch()  # an older home: an (empty) database others could read
    (home / "prefect.db").chmod(0o644)
    started = LocalPrefectServer.start(home, ui=False)
    try:
        started.wait_healthy(180)
        yield started
    finally:
        started.stop()


def _auth(server: LocalPrefectServer) -> dict[str, str]:
    assert server.auth_string is not None
    return {"Authorization": "Basic " + base64.b64encode(server.auth_string.encode()).decode()}


def _paused_run(server: LocalPrefectServer) -> str:
    """A flow run in the Paused state, created with the auth string (as a flow run waiting for approval)."""
    with httpx.Client(base_url=server.api_url, headers=_auth(server), timeout=30) as api:
        flow = api.post("/flows/", json={"name": f"attacked-{uuid.uuid4().hex[:8]}"}).raise_for_status().json()
        run = api.post(
            "/flow_runs/",
            json={"flow_id": flow["id"], "state": {"type": "PAUSED", "name": "Paused"}},
        ).raise_for_status()
        return str(run.json()["id"])


def _state(server: LocalPrefectServer, run_id: str) -> str:
    with httpx.Client(base_url=server.api_url, headers=_auth(server), timeout=30) as api:
        return str(api.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]["type"])


def test_resume_without_the_auth_string_is_refused(server: LocalPrefectServer) -> None:
    """POST /flow_runs/{id}/resume (an approval) without the auth string, or with a wrong one, is 401; the run stays paused."""
    run_id = _paused_run(server)
    body = {"run_input": {"approve": True, "hold_actions": []}}
    url = f"{server.api_url}/flow_runs/{run_id}/resume"
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Basic " + base64.b64encode(b"scimflow:guess").decode()}
    assert httpx.post(url, json=body, headers=wrong, timeout=30).status_code == 401
    assert httpx.post(f"{server.api_url}/flow_runs/filter", json={}, timeout=30).status_code == 401
    assert _state(server, run_id) == "PAUSED"


def test_with_the_auth_string_the_same_calls_work(server: LocalPrefectServer) -> None:
    """The flow process's environment carries the auth string, and with it the API answers."""
    env = server.client_env()
    assert env["PREFECT_API_URL"] == server.api_url and env["PREFECT_API_AUTH_STRING"] == server.auth_string
    run_id = _paused_run(server)
    with httpx.Client(base_url=server.api_url, headers=_auth(server), timeout=30) as api:
        assert api.post("/flow_runs/filter", json={"limit": 5}).status_code == 200
        resumed = api.post(f"/flow_runs/{run_id}/resume", json={})
    assert resumed.status_code == 201, resumed.text
    assert resumed.json()["status"] == "ACCEPT"
    assert _state(server, run_id) != "PAUSED"


def test_cors_preflight_from_a_foreign_origin_is_refused(server: LocalPrefectServer) -> None:
    """A browser's preflight from another origin is not allowed; the server's own origin is."""
    url = f"{server.api_url}/flow_runs/{uuid.uuid4()}/resume"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    evil = httpx.options(url, headers={"Origin": EVIL, **preflight}, timeout=30)
    assert evil.headers.get("access-control-allow-origin") not in ("*", EVIL)
    assert evil.status_code >= 400
    own = httpx.options(url, headers={"Origin": server.ui_url, **preflight}, timeout=30)
    assert own.status_code == 200 and own.headers.get("access-control-allow-origin") == server.ui_url
    simple = httpx.post(f"{server.api_url}/flow_runs/filter", json={}, headers={"Origin": EVIL, **_auth(server)})
    assert simple.headers.get("access-control-allow-origin") not in ("*", EVIL)


def test_home_is_0700_and_its_files_0600(server: LocalPrefectServer) -> None:
    """The Prefect home (0755 before) is 0700 and the database and everything else in it owner-only."""
    home = server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    db = home / "prefect.db"
    assert db.stat().st_size > 0, "the server did not use the database in its home"
    seen = []
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode & 0o077 == 0, f"{path} is {mode:04o}, expected {expected:04o}"
        seen.append(path.name)
    assert {"prefect.db", "server.log", "api-auth-string"} <= set(seen)
    assert (home / "api-auth-string").read_text().strip() == server.auth_string


def test_auth_string_is_random_per_start(server: LocalPrefectServer, tmp_path: Path) -> None:
    """Each start draws a new auth string (never a fixed default), long enough not to be guessed."""
    assert server.auth_string is not None and len(server.auth_string) >= 40
    assert server.auth_string.startswith("scimflow:")
    other = LocalPrefectServer.start(tmp_path / "home", ui=False, services=False)
    try:
        assert other.auth_string is not None and other.auth_string != server.auth_string
    finally:
        other.stop()
