"""auto mode against the guardrails: within budget everything applies, over budget only that class waits,
an unhealthy source applies nothing (ARCHITECTURE.md, Guardrails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scimflow.config import load_config
from scimflow.pipeline import open_store
from tests.flows.approvalkit import APPROVER, approve_input
from tests.flows.flowkit import params, run_flow, start_paused

from .nightkit import WIDE, active, graph, so_reset_counters

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]

ROOT = Path(__file__).resolve().parents[2]
CREATED = ("ola.hansen@contoso.com", "per.berg@contoso.com")
RETIRED = "sara.lind@contoso.com"


def test_within_budget_auto_applies_everything(tenant_factory):
    """With every class within its budget (one retirement, max_retire 1), auto applies the whole plan at once."""
    t = tenant_factory(guardrails={"max_retire": 1, "max_changes": 4, "min_source_users": 4, "max_source_drop": "20%"})
    result = run_flow(params(t, mode="auto"))
    assert (result.status, result.exit_code, result.approver) == ("applied", 0, "auto (within the guardrails)")
    assert result.guardrails["verdict"] == "ok"
    assert (result.report.applied, result.report.held) == (4, 0)
    assert all(active(t, k) for k in CREATED) and not active(t, RETIRED)


def test_over_retire_budget_applies_the_rest_and_waits_for_the_retirements(tenant_factory):
    """Over max_retire, auto applies creates and updates, pauses for the retirements, and applies them once
    approved with release_held (the form's explicit release of a class over budget)."""
    from prefect.flow_runs import resume_flow_run

    t = tenant_factory(guardrails={**WIDE, "max_retire": 0})
    run = start_paused(params(t, mode="auto", wait_for_held=True))
    assert all(active(t, k) for k in CREATED), "the classes within budget apply before the pause"
    assert active(t, RETIRED), "the retirement waits for the approver"
    answer = approve_input(run.id, release_held=["retire"], comment="retirement checked")
    resume_flow_run(run.id, run_input=answer)
    result = run.result()
    assert (result.status, result.exit_code) == ("applied", 0)
    assert result.guardrails["held"] == ["retire"]
    assert (result.report.applied, result.report.held) == (4, 0)
    assert not active(t, RETIRED)
    with open_store(load_config(t.config)) as store:
        forms = store.approvals(result.plan_hash)
    assert [(a["approver"], a["approve"]) for a in forms] == [
        ("auto (within the guardrails)", True),
        (f"{APPROVER} (unverified, entered in the form)", True),
    ]


def test_over_budget_without_waiting_exits_3_with_the_retirement_held(tenant_factory):
    """`python -m flows.run --mode auto --no-wait-for-held` applies what is within budget and exits 3."""
    from scimflow.apply import SyncResult

    t = tenant_factory(guardrails={**WIDE, "max_retire": 0})
    out = t.folder / "result.json"
    cmd = [sys.executable, "-m", "flows.run", "--config", str(t.config), "--mode", "auto", "--no-wait-for-held"]
    proc = subprocess.run([*cmd, "--result-json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = SyncResult.model_validate_json(out.read_text())
    assert result.status == "partial" and result.report is not None
    assert (result.report.applied, result.report.held) == (3, 1)
    assert all(active(t, k) for k in CREATED) and active(t, RETIRED)
    with open_store(load_config(t.config)) as store:
        journal = store.journal(result.plan_hash)
    assert journal.filter(journal["action"] == "retire")["status"].to_list() == ["held"]


def test_over_change_budget_holds_every_class(tenant_factory):
    """Over max_changes every change class is over budget, so auto without waiting applies nothing (exit 3)."""
    t = tenant_factory(guardrails={**WIDE, "max_changes": 3})
    result = run_flow(params(t, mode="auto", wait_for_held=False))
    assert (result.status, result.exit_code) == ("partial", 3)
    assert result.guardrails["held"] == ["create", "update", "retire"]
    assert (result.report.applied, result.report.held) == (0, 4)
    assert t.so_stats()["writes"] == 0


def test_too_few_entra_users_applies_nothing(tenant_factory):
    """An extract below min_source_users is judged unhealthy: nothing is written to SuperOffice (exit 1)."""
    t = tenant_factory(guardrails={**WIDE, "min_source_users": 5})
    result = run_flow(params(t, mode="auto"))
    assert (result.status, result.exit_code) == ("source_unhealthy", 1)
    assert any("min_source_users" in r for r in result.guardrails["reasons"])
    assert t.so_stats()["writes"] == 0


def test_half_the_entra_users_gone_applies_nothing(tenant_factory):
    """After a good night, deleting half the Entra users trips max_source_drop: the following nights write nothing."""
    t = tenant_factory(guardrails=WIDE)
    first = run_flow(params(t, mode="auto"))
    assert first.status == "applied"
    with graph(t) as g:
        users = g.get("/_emulator/snapshot").json()["users"]
        for user in users[: len(users) // 2]:
            g.delete(f"/_emulator/users/{user['id']}").raise_for_status()
    so_reset_counters(t)
    second = run_flow(params(t, mode="auto"))
    assert (second.status, second.exit_code) == ("source_unhealthy", 1)
    assert second.counts["retire"] >= 1, "the plan would have retired the deleted users"
    assert any("max_source_drop" in r for r in second.guardrails["reasons"])
    third = run_flow(params(t, mode="auto"))
    assert third.status == "source_unhealthy", "an unhealthy night is no new base for the next one"
    assert t.so_stats()["writes"] == 0
