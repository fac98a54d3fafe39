"""`scimflow apply PLAN_DIR` with a Prefect server there: the saved plan is applied as an `apply-saved-plan`
flow run (the session server, the worked example on the emulators)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.commands.sync_cmd import LocalPrefectServer
from tests.flows.flowkit import Tenant, worked_example_tenant
from tests.test_cli_apply import ROOT, apply_on_a_terminal, over_budget_plan, plan, plan_hash

pytestmark = pytest.mark.prefect


def scimflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`scimflow ARGS` in a child process with the session server's PREFECT_API_URL."""
    env = dict(os.environ)
    assert env.get("PREFECT_API_URL")
    return subprocess.run(
        [sys.executable, "-m", "scimflow", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env
    )


@pytest.fixture
def worked(tmp_path: Path, prefect_server: LocalPrefectServer) -> Iterator[tuple[Tenant, Path]]:
    """The worked example on fresh emulators and its plan written by `scimflow plan --out`."""
    with worked_example_tenant(tmp_path / "tenant") as tenant:
        out = tmp_path / "plan"
        proc = plan(tenant.config, out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        yield tenant, out


def _apply_runs(server: LocalPrefectServer) -> list[dict[str, Any]]:
    """The flow runs of `apply-saved-plan` on the server."""
    with httpx.Client(base_url=server.api_url, timeout=30) as api:
        flows = api.post("/flows/filter", json={"flows": {"name": {"any_": ["apply-saved-plan"]}}}).json()
        if not flows:
            return []
        body = {"flows": {"id": {"any_": [flows[0]["id"]]}}, "limit": 50}
        runs: list[dict[str, Any]] = api.post("/flow_runs/filter", json=body).json()
    return runs


def test_apply_with_prefect_runs_the_apply_saved_plan_flow(
    worked: tuple[Tenant, Path], prefect_server: LocalPrefectServer, tmp_path: Path
) -> None:
    """With PREFECT_API_URL set, `apply --approve HASH` runs a completed `<tenant>-apply-…` flow run tagged with
    the tenant that applies the plan (re-plan empty) and journals the CLI approver."""
    tenant, out = worked
    h = plan_hash(out)
    before = {r["id"] for r in _apply_runs(prefect_server)}
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", h[:12])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied 4, already done 0, held 0, drifted 0, failed 0; verified 4 of 4" in proc.stdout
    assert "as a Prefect flow run" in proc.stderr

    (run,) = [r for r in _apply_runs(prefect_server) if r["id"] not in before]
    from scimflow.config import load_config

    key = load_config(tenant.config).tenant_key
    assert run["name"].startswith(f"{key}-apply-") and run["state"]["type"] == "COMPLETED"
    assert f"tenant:{key}" in run["tags"]

    journal = scimflow("journal", "--config", str(tenant.config), "--plan", h[:12], "--json")
    assert journal.returncode == 0, journal.stderr
    kari = next(r for r in json.loads(journal.stdout) if r["key"] == "kari.nordmann@contoso.com")
    assert kari["approver"].startswith("cli:") and kari["approved"] is True and kari["status"] == "verified"

    again = plan(tenant.config, tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("No changes.")


def test_apply_direct_skips_prefect_and_a_changed_plan_fails_the_flow(
    worked: tuple[Tenant, Path], prefect_server: LocalPrefectServer
) -> None:
    """`--direct` applies with no flow run even when Prefect is there; the flow itself refuses a plan folder
    whose hash is not the confirmed one (exit 1, nothing written)."""
    tenant, out = worked
    before_snapshot = tenant.so_snapshot()
    wrong = ("0" if plan_hash(out)[0] != "0" else "1") + plan_hash(out)[1:]
    flow = [sys.executable, "-m", "flows.apply_plan", "--config", str(tenant.config), "--plan-dir", str(out)]
    refused = subprocess.run(
        [*flow, "--plan-hash", wrong, "--approver", "cli:test"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not the approved" in refused.stderr
    assert tenant.so_snapshot() == before_snapshot

    runs = {r["id"] for r in _apply_runs(prefect_server)}
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", plan_hash(out), "--direct")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied 4," in proc.stdout and "flow run" not in proc.stderr
    assert {r["id"] for r in _apply_runs(prefect_server)} == runs


def _new_run(server: LocalPrefectServer, before: set[str]) -> dict[str, Any]:
    """The one `apply-saved-plan` flow run not in ``before``."""
    (run,) = [r for r in _apply_runs(server) if r["id"] not in before]
    return run


def test_flow_run_holds_a_class_over_its_guardrail_budget(prefect_server: LocalPrefectServer, tmp_path: Path) -> None:
    """As a flow run, a plan whose retirements are over budget applies the rest and holds Sara's retirement:
    exit 3, the run Completed named Partial, the hold journalled, Sara still active."""
    with over_budget_plan(tmp_path) as (tenant, out):
        h = plan_hash(out)
        before = {r["id"] for r in _apply_runs(prefect_server)}
        proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", h)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "as a Prefect flow run" in proc.stderr
        assert "applied 3, already done 0, held 1" in proc.stdout
        assert "held retire sara.lind@contoso.com" in proc.stdout
        assert "held over their guardrail budget: retire" in proc.stderr
        run = _new_run(prefect_server, before)
        assert (run["state"]["type"], run["state"]["name"]) == ("COMPLETED", "Partial")
        users = tenant.users_by_name()
        assert users["sara.lind@contoso.com"][0]["Deleted"] is False
        assert users["kari.nordmann@contoso.com"][0]["Role"]["Value"] == "Manager"
        journal = scimflow("journal", "--config", str(tenant.config), "--plan", h[:12], "--json")
        assert journal.returncode == 0, journal.stderr
        sara = next(r for r in json.loads(journal.stdout) if r["key"] == "sara.lind@contoso.com")
        assert sara["status"] == "held"


def test_flow_run_after_the_prompt_only_for_the_right_hash(
    worked: tuple[Tenant, Path], prefect_server: LocalPrefectServer
) -> None:
    """On a terminal with Prefect there, a wrong hash typed at the prompt applies nothing and starts no flow
    run; the right one starts one `apply-saved-plan` run that applies the plan."""
    tenant, out = worked
    h = plan_hash(out)
    env = dict(os.environ)
    before = {r["id"] for r in _apply_runs(prefect_server)}
    snapshot = tenant.so_snapshot()
    refused = apply_on_a_terminal(tenant, out, h[1:13], env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert h in refused.stderr and "not approved: nothing applied" in refused.stderr
    assert tenant.so_snapshot() == snapshot
    assert {r["id"] for r in _apply_runs(prefect_server)} == before

    done = apply_on_a_terminal(tenant, out, h[:12], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as a Prefect flow run" in done.stderr and "applied 4," in done.stdout
    assert _new_run(prefect_server, before)["state"]["type"] == "COMPLETED"
    assert tenant.users_by_name()["sara.lind@contoso.com"][0]["Deleted"] is True
