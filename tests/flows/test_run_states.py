"""The sync run's final state says what happened: Failed for exit 1, a named Completed state for exit 3."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from flowkit import params, run_flow_state, start_paused, wait_for

from scimflow.apply import PARTIAL_STATE_NAMES, ApplyReport, SyncResult, final_state_of

ROOT = Path(__file__).resolve().parents[2]


def _result(status: str, **kw: Any) -> SyncResult:
    kw.setdefault("counts", {"create": 2, "update": 1, "retire": 1})
    return SyncResult.model_validate({"status": status, "plan_hash": "ab" * 32, "plan_dir": "/tmp/p", **kw})


def _report(**kw: int) -> ApplyReport:
    return ApplyReport(plan_hash="ab" * 32, planned=4, **kw)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (_result("applied", report=_report(applied=4)), ("completed", "Completed", "applied 4 of 4")),
        (_result("nothing_to_do", counts={}), ("completed", "Completed", "nothing to do")),
        (_result("preview", counts={}), ("completed", "Completed", "preview of plan abababababab: 0 changes")),
        (_result("preview"), ("completed", "Preview", "4 changes, none applied")),
        (
            _result("partial", report=_report(applied=3, held=1), guardrails={"held": ["retire"]}),
            ("completed", "Partial", "applied 3 of 4, held 1 (over budget: retire)"),
        ),
        (_result("rejected", approver="cli", comment="not today"), ("completed", "Rejected", "by cli: not today")),
        (_result("timed_out", approver="timeout"), ("completed", "ApprovalTimedOut", "no approval")),
        (
            _result("source_unhealthy", guardrails={"reasons": ["3 Entra users < min_source_users 5"]}),
            ("failed", "Failed", "source unhealthy, nothing applied: 3 Entra users < min_source_users 5"),
        ),
        (_result("failed", report=_report(applied=2, failed=2)), ("failed", "Failed", "writes failed: applied 2")),
        (_result("plan_changed"), ("failed", "Failed", "plan files changed after approval")),
    ],
)
def test_final_state_follows_the_exit_code(result: SyncResult, expected: tuple[str, str, str]) -> None:
    """Exit 1 is failed, exit 3 completed under its own name, exit 0 plain Completed; the message says why."""
    kind, name, message = final_state_of(result)
    assert (kind, name) == expected[:2]
    assert expected[2] in message
    assert (kind == "failed") == (result.exit_code == 1)
    assert (name in PARTIAL_STATE_NAMES) == (result.exit_code == 3)


def test_the_message_stays_short() -> None:
    """A state message is one bounded line however many reasons the guardrails gave."""
    _, _, message = final_state_of(_result("source_unhealthy", guardrails={"reasons": ["x" * 200] * 10}))
    assert len(message) <= 500 and "\n" not in message


def _server_state(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_each_outcome_ends_in_its_state_on_the_server(worked_example, tmp_path):
    """On the server: Rejected and ApprovalTimedOut (completed), then Completed when applied, Failed when unhealthy."""
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    run = start_paused(params(worked_example))
    resume_flow_run(run.id, run_input={"approve": False, "comment": "not tonight"})
    assert run.result().status == "rejected"
    rejected = _server_state(run.id)
    assert (rejected.type, rejected.name) == (StateType.COMPLETED, "Rejected")
    assert "not tonight" in (rejected.message or "")

    state, result = run_flow_state(params(worked_example, approval_timeout=2))
    assert (result.status, result.exit_code, state.name) == ("timed_out", 3, "ApprovalTimedOut")
    timed_out = _server_state(result.flow_run_id)
    assert (timed_out.type, timed_out.name) == (StateType.COMPLETED, "ApprovalTimedOut")

    state, result = run_flow_state(params(worked_example, cli_approved=True))
    assert (result.status, state.type, state.name) == ("applied", StateType.COMPLETED, "Completed")
    assert _server_state(result.flow_run_id).name == "Completed"

    writes = worked_example.so_stats()["writes"]
    data = yaml.safe_load(worked_example.config.read_text())
    data["guardrails"] = {**data["guardrails"], "min_source_users": 50}
    worked_example.config.write_text(yaml.safe_dump(data))
    name = f"unhealthy-{uuid.uuid4().hex[:8]}"
    state, result = run_flow_state(params(worked_example, mode="auto"), flow_run_name=name)
    assert (result.status, result.exit_code) == ("source_unhealthy", 1)
    failed = _server_state(result.flow_run_id)
    assert failed.type == StateType.FAILED and "min_source_users" in (failed.message or "")
    assert worked_example.so_stats()["writes"] == writes, "the unhealthy run wrote nothing"


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_the_cli_reads_the_result_of_a_failed_and_a_partial_run(worked_example, tmp_path):
    """`python -m flows.run` exits 3 on a Partial run and 1 on a Failed one, writing the result JSON for both."""
    data = yaml.safe_load(worked_example.config.read_text())
    data["guardrails"] = {"max_retire": 0, "max_changes": 500, "min_source_users": 1}
    worked_example.config.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "flows.run", "--config", str(worked_example.config), "--mode", "auto"]
    out = tmp_path / "partial.json"
    partial = subprocess.run(
        [*cmd, "--no-wait-for-held", "--result-json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert partial.returncode == 3, partial.stdout + partial.stderr
    result = SyncResult.model_validate_json(out.read_text())
    assert _server_state(result.flow_run_id).name == "Partial"

    data["guardrails"]["min_source_users"] = 50
    worked_example.config.write_text(yaml.safe_dump(data))
    out = tmp_path / "failed.json"
    failed = subprocess.run([*cmd, "--result-json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "sync source_unhealthy" in failed.stdout
    assert json.loads(out.read_text())["status"] == "source_unhealthy"
    assert _server_state(json.loads(out.read_text())["flow_run_id"]).is_failed()


def test_run_names_carry_tenant_mode_and_utc_time() -> None:
    """A run's name is <tenant>-<mode>-<UTC date and time>, whatever zone its start time is given in."""
    from datetime import datetime, timedelta, timezone

    from flows.labels import name_for

    oslo = timezone(timedelta(hours=1))
    assert name_for("contoso", "auto", datetime(2026, 12, 3, 2, 0, tzinfo=oslo)) == "contoso-auto-2026-12-03T0100Z"


def _logs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_run_is_named_and_tagged_for_its_tenant_and_carries_the_core_logs(worked_example):
    """The run's name and tags name the tenant; the core's INFO lines (the apply engine's chunk line) are in
    its logs on the server, per-user write lines (DEBUG) are not, and no secret is."""
    from prefect.client.orchestration import get_client

    from flows.sync import sync_users
    from scimflow.config import load_config

    tenant = load_config(worked_example.config).tenant_key
    result = sync_users(params(worked_example, cli_approved=True))
    assert result.status == "applied"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(result.flow_run_id)
    assert run.name.startswith(f"{tenant}-approve-20") and run.name.endswith("Z")
    assert {f"tenant:{tenant}", "target:superoffice"} <= set(run.tags)

    def core_lines() -> list[Any]:
        return [log for log in _logs(result.flow_run_id) if log.name.startswith("scimflow.")]

    # one INFO line per chunk from the apply engine (per-user writes are DEBUG: the journal has them)
    wait_for(lambda: any("chunk of 4 rows" in log.message for log in core_lines()), timeout=30)
    chunks = [log for log in core_lines() if log.name == "scimflow.apply._engine" and "chunk of" in log.message]
    assert len(chunks) == 1 and chunks[0].level == 20 and "applied 4" in chunks[0].message
    assert not any("created SuperOffice user" in log.message for log in core_lines())
    secrets = worked_example.host.secrets
    everything = " ".join(log.message for log in _logs(result.flow_run_id))
    for secret in (secrets.entra_client_secret, secrets.app_token, secrets.system_user_token):
        assert secret and secret not in everything


def test_runs_left_running_are_marked_crashed_only_when_not_alive(tmp_path: Path) -> None:
    """mark_crashed_runs marks the running runs the liveness check gives up on, and no other run."""
    from scimflow.state import StateStore, mark_crashed_runs, running_runs

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        dead = store.start_run("auto", flow_run_id="dead-one")
        paused = store.start_run("approve", flow_run_id="paused-one")
        done = store.start_run("auto", flow_run_id="done-one")
        store.finish_run(done, "completed", {})
        asked: list[str] = []

        def alive(row: dict[str, Any]) -> bool:
            asked.append(row["flow_run_id"])
            return row["flow_run_id"] != "dead-one"

        assert mark_crashed_runs(store, alive) == [dead]
        assert sorted(asked) == ["dead-one", "paused-one"], "finished runs are not looked at"
        assert (store.run(dead) or {})["status"] == "crashed" and (store.run(dead) or {})["finished_at"] is not None
        assert [r["id"] for r in running_runs(store)] == [paused]
        assert (store.run(done) or {})["status"] == "completed"
        assert mark_crashed_runs(store, alive) == []
    finally:
        store.close()


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_killed_run_is_marked_crashed_by_the_next_run(worked_example):
    """SIGKILL of a running `python -m flows.run` mid-apply: the next run marks it crashed in the runs table
    and in Prefect, frees its tenant slot without waiting, and applies the rest."""
    import os
    import signal

    from prefect.client.schemas.objects import StateType

    from scimflow.config import load_config
    from scimflow.pipeline import open_store
    from scimflow.state import running_runs

    worked_example.so_settings(latency=1.0)  # an apply slow enough to be killed in
    cmd = [sys.executable, "-m", "flows.run", "--config", str(worked_example.config), "--approve"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: worked_example.so_stats()["writes"] >= 1 or first.poll() is not None, timeout=120, step=0.05)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    with open_store(load_config(worked_example.config)) as store:
        (killed,) = running_runs(store)
    assert _server_state(killed["flow_run_id"]).type == StateType.RUNNING, "Prefect still thinks it runs"

    worked_example.so_settings(latency=0.0)
    _, result = run_flow_state(params(worked_example, cli_approved=True))
    assert result.exit_code == 0
    waited = [log.message for log in _logs(result.flow_run_id) if "waiting for another run" in log.message]
    assert not waited, "the killed run's tenant slot was released at once"
    with open_store(load_config(worked_example.config)) as store:
        assert (store.run(killed["id"]) or {})["status"] == "crashed"
    crashed = _server_state(killed["flow_run_id"])
    assert crashed.type == StateType.CRASHED and "next run" in (crashed.message or "")


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_killed_paused_run_ends_crashed_when_its_heartbeats_stop(worked_example):
    """With the crash-detection automation, a run killed while paused ends Crashed within three heartbeats."""
    import asyncio
    import os
    import signal
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from deployments.crash_detection import ensure_crash_detection

    automation = asyncio.run(ensure_crash_detection(30))
    env = {**os.environ, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    cmd = [sys.executable, "-m", "flows.run", "--config", str(worked_example.config), "--timeout", "600"]
    # found by its config path among the runs (its name is the flow's own)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with get_client(sync_client=True) as client:

            def paused() -> Any:
                runs = client.read_flow_runs(limit=20)
                return next(
                    (
                        r
                        for r in runs
                        if r.parameters.get("params", {}).get("config") == str(worked_example.config)
                        and r.state is not None
                        and r.state.is_paused()
                    ),
                    None,
                )

            wait_for(lambda: paused() is not None, timeout=120, step=0.5)
            run = paused()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed_at = time.monotonic()
            wait_for(lambda: client.read_flow_run(run.id).state.type == StateType.CRASHED, timeout=200, step=2)
            state = client.read_flow_run(run.id).state
            assert "heartbeat" in (state.message or "")
            assert time.monotonic() - killed_at < 3 * 30 + 60
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

        async def remove() -> None:
            async with get_client() as client:
                await client.delete_automation(automation.id)

        asyncio.run(remove())
