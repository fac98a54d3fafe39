"""PostgreSQL all the way: a Prefect server on PostgreSQL (asyncpg) runs the real sync-users flow on the
emulators, approved through the REST resume API, with the scimflow state store on PostgreSQL too.

Skipped, saying why, only where no PostgreSQL server binaries are installed (tests/pg.py)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scimflow.apply import SyncResult
from scimflow.commands.sync_cmd import LocalPrefectServer, prefect_env
from scimflow.state import StateStore
from tests.flows.approvalkit import approve_input_via
from tests.flows.flowkit import wait_for
from tests.pg import PostgresServer

from .nightkit import WIDE, active

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PgPrefect:
    """A Prefect server whose database is ``database`` on the test's PostgreSQL server."""

    api_url: str
    database: str


@pytest.fixture(scope="module")
def pg_prefect(postgres_server: PostgresServer) -> Iterator[PgPrefect]:
    """`prefect server start` with its database on the PostgreSQL server (a database of its own)."""
    database = postgres_server.create_database()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/{database}"
    home = Path(tempfile.mkdtemp(prefix="scimflow-pg-prefect-"))
    with pytest.MonkeyPatch.context() as mp:  # the child's environment is a copy of ours
        mp.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", url)
        server = LocalPrefectServer.start(home, ui=False, auth=False)  # REST approval below
    try:
        server.wait_healthy(180)
        yield PgPrefect(server.api_url, database)
    finally:
        server.stop()


def _paused_run(api: httpx.Client) -> str | None:
    runs = api.post(
        "/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}, "limit": 5}
    ).json()
    return runs[0]["id"] if runs else None


def test_sync_on_a_postgres_prefect_server_with_a_postgres_state_store(
    pg_prefect, postgres_server, postgres_url, tenant_factory
):
    """The flow pauses on the PostgreSQL-backed server, is approved by REST, applies, and its state lands in PostgreSQL."""
    import psycopg

    t = tenant_factory(guardrails=WIDE, state_url=postgres_url)
    result_json = t.folder / "result.json"
    cmd = [sys.executable, "-m", "flows.run", "--config", str(t.config), "--poll-interval", "1", "--timeout", "180"]
    cmd += ["--result-json", str(result_json)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=prefect_env(None, pg_prefect.api_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=pg_prefect.api_url, timeout=30) as api:
            wait_for(lambda: _paused_run(api) is not None or proc.poll() is not None, timeout=180, step=0.5)
            run_id = _paused_run(api)
            assert run_id is not None, "the run never paused"
            answer = api.post(
                f"/flow_runs/{run_id}/resume",
                json={"run_input": approve_input_via(api, run_id, comment="on PostgreSQL")},
            ).json()
            assert answer["status"] == "ACCEPT", answer
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out
            assert api.get(f"/flow_runs/{run_id}").json()["state"]["type"] == "COMPLETED"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert active(t, "ola.hansen@contoso.com") and not active(t, "sara.lind@contoso.com")

    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname={pg_prefect.database}"
    with psycopg.connect(dsn) as conn:
        (completed,) = conn.execute(
            "SELECT count(*) FROM flow_run WHERE id = %s AND state_type = 'COMPLETED'", (run_id,)
        ).fetchone()
    assert completed == 1, "the Prefect server keeps its runs in PostgreSQL"
    store = StateStore(postgres_url)
    try:
        assert store.links().height == 4
        plan_hash = SyncResult.model_validate_json(result_json.read_text()).plan_hash
        assert set(store.journal(plan_hash)["status"].to_list()) == {"verified"}
        (approval,) = store.approvals(plan_hash)
        assert (approval["approve"], approval["comment"]) == (True, "on PostgreSQL")
        assert store.last_successful_source_count() == 4
    finally:
        store.close()
