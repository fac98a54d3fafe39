"""The sync-users flow end to end: real Prefect server, emulators over HTTPS, SQLite state store."""

from __future__ import annotations

import getpass

import pytest
from approvalkit import APPROVER, approve_input, approve_input_via
from flowkit import params, run_flow, start_paused

from scimflow.config import load_config
from scimflow.pipeline import open_store
from scimflow.preview import md_text

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]

CREATED = {"ola.hansen@contoso.com", "per.berg@contoso.com"}


def _active(tenant, user_name: str) -> bool:
    (user,) = tenant.users_by_name()[user_name]
    return not user["Deleted"]


def test_cli_approval_applies_the_plan_and_a_second_run_plans_nothing(worked_example):
    """Approved on the command line, every change lands and is verified; the next run has nothing to do."""
    result = run_flow(params(worked_example, cli_approved=True))
    assert (result.status, result.exit_code) == ("applied", 0)
    assert result.report.applied == 4 and result.report.verified == 4
    users = worked_example.users_by_name()
    assert set(users) >= CREATED and all(len(users[k]) == 1 for k in CREATED)
    assert not _active(worked_example, "sara.lind@contoso.com")
    (kari,) = users["kari.nordmann@contoso.com"]
    assert kari["Person"]["Title"] == "Sales Manager"
    with open_store(load_config(worked_example.config)) as store:
        assert set(store.journal(result.plan_hash)["status"].to_list()) == {"verified"}
        (approval,) = store.approvals(result.plan_hash)
        assert approval["approver"] == f"{getpass.getuser()} (cli)" and approval["approve"] is True
        assert store.links().height == 4

    again = run_flow(params(worked_example, cli_approved=True))
    assert (again.status, again.exit_code, again.change_rows) == ("nothing_to_do", 0, 0)


def test_form_approval_applies_and_publishes_artifacts(worked_example):
    """A run paused for the form applies once resumed with approve=true, and publishes its artifacts."""
    from prefect.artifacts import Artifact
    from prefect.flow_runs import resume_flow_run

    run = start_paused(params(worked_example))
    resume_flow_run(run.id, run_input=approve_input(run.id, comment="looks right"))
    result = run.result()
    assert (result.status, result.exit_code) == ("applied", 0)
    assert result.approver == f"{APPROVER} (unverified, entered in the form)" and result.comment == "looks right"
    tenant = load_config(worked_example.config).tenant_key
    run_key = f"{tenant}-preview-{run.id.hex[:12]}"
    assert result.artifacts["preview"] == run_key
    preview = Artifact.get(run_key)
    assert preview is not None and result.plan_hash in str(preview.data)
    latest = Artifact.get(f"{tenant}-sync-preview")  # the tenant's "latest" pointer names the run's key
    assert latest is not None and run_key in str(latest.data) and "| create |" not in str(latest.data)
    report = Artifact.get(result.artifacts["report"])
    assert report is not None and "applied" in str(report.data)
    assert md_text(result.approver) in str(report.data)  # the report names the approver (escaped Markdown)
    progress = Artifact.get(result.artifacts["progress"])  # written through flows.prefect_client.api_client
    assert progress is not None and progress.type == "progress" and float(str(progress.data)) == 100.0
    assert progress.flow_run_id == run.id and progress.description == "Applying 4 changes"


def test_rejection_applies_nothing(worked_example):
    """A form submitted with approve=false ends the run rejected (exit 3) with no write to SuperOffice."""
    from prefect.flow_runs import resume_flow_run

    run = start_paused(params(worked_example))
    resume_flow_run(run.id, run_input={"approve": False, "comment": "not today"})
    result = run.result()
    assert (result.status, result.exit_code) == ("rejected", 3)
    assert worked_example.so_stats()["writes"] == 0
    with open_store(load_config(worked_example.config)) as store:
        (approval,) = store.approvals(result.plan_hash)
        assert approval["approve"] is False and approval["comment"] == "not today"


def test_approval_timeout_rejects(worked_example):
    """No answer within approval_timeout rejects the plan (exit 3) and writes nothing."""
    result = run_flow(params(worked_example, approval_timeout=2))
    assert (result.status, result.exit_code) == ("timed_out", 3)
    assert worked_example.so_stats()["writes"] == 0


def test_form_holds_retirements(worked_example):
    """hold_actions=["retire"] applies everything but the retirement, which stays active (exit 3)."""
    from prefect.flow_runs import resume_flow_run

    run = start_paused(params(worked_example))
    resume_flow_run(run.id, run_input=approve_input(run.id, hold_actions=["retire"]))
    result = run.result()
    assert (result.status, result.exit_code) == ("partial", 3)
    assert (result.report.applied, result.report.held) == (3, 1)
    assert _active(worked_example, "sara.lind@contoso.com")
    assert set(worked_example.users_by_name()) >= CREATED


def test_form_holds_users(worked_example):
    """hold_users leaves exactly those users alone."""
    from prefect.flow_runs import resume_flow_run

    run = start_paused(params(worked_example))
    resume_flow_run(run.id, run_input=approve_input(run.id, hold_users=["Ola.Hansen@contoso.com"]))
    result = run.result()
    assert result.exit_code == 3 and result.report.held == 1
    users = worked_example.users_by_name()
    assert "ola.hansen@contoso.com" not in users and "per.berg@contoso.com" in users


def test_resume_through_the_rest_api_as_the_ui_does(worked_example, prefect_server):
    """POST /api/flow_runs/{id}/resume with a run_input (what the UI's form sends) approves the run."""
    import httpx

    run = start_paused(params(worked_example))
    bad = httpx.post(f"{prefect_server.api_url}/flow_runs/{run.id}/resume", json={"run_input": {"approve": "maybe"}})
    assert bad.json()["status"] == "REJECT"  # validated against the form's schema; the run stays paused
    with httpx.Client(base_url=str(prefect_server.api_url), timeout=30) as api:  # the form read as the UI reads it
        answer = approve_input_via(api, run.id, comment="via REST", hold_actions=[], hold_users=[])
        ok = api.post(f"/flow_runs/{run.id}/resume", json={"run_input": answer})
    assert ok.json()["status"] == "ACCEPT"
    result = run.result()
    assert (result.status, result.comment) == ("applied", "via REST")


def test_drift_between_plan_and_approval_is_held(worked_example):
    """A user changed in SuperOffice after planning is held as drifted, never overwritten (exit 3)."""
    from prefect.flow_runs import resume_flow_run

    from scimflow.connectors.superoffice import SuperOfficeTarget

    run = start_paused(params(worked_example))
    cfg = load_config(worked_example.config)
    with SuperOfficeTarget(cfg.superoffice, ca_bundle=cfg.ca_bundle) as so:
        so.update_user(11, {"title": {"from": "Sales Rep", "to": "Chief Sales Rep"}}, so.read_reference())
    resume_flow_run(run.id, run_input=approve_input(run.id))
    result = run.result()
    assert (result.status, result.exit_code, result.report.drifted) == ("partial", 3, 1)
    (row,) = [r for r in result.report.rows if r.outcome == "drifted"]
    assert row.key == "kari.nordmann@contoso.com" and "title" in (row.detail or "")
    (kari,) = worked_example.users_by_name()["kari.nordmann@contoso.com"]
    assert kari["Person"]["Title"] == "Chief Sales Rep"


def test_auto_mode_holds_over_budget_classes(worked_example):
    """auto mode applies the classes within budget and, without wait_for_held, ends with the rest held."""
    import yaml

    data = yaml.safe_load(worked_example.config.read_text())
    data["guardrails"] = {"max_retire": 0, "max_changes": 500, "min_source_users": 1}
    worked_example.config.write_text(yaml.safe_dump(data))
    result = run_flow(params(worked_example, mode="auto", wait_for_held=False))
    assert (result.status, result.exit_code) == ("partial", 3)
    assert result.guardrails["held"] == ["retire"]
    assert (result.report.applied, result.report.held) == (3, 1)
    assert _active(worked_example, "sara.lind@contoso.com")


def test_preview_mode_writes_nothing(worked_example):
    """preview mode plans and publishes, applies nothing, and exits 3 because changes are pending."""
    result = run_flow(params(worked_example, mode="preview"))
    assert (result.status, result.exit_code) == ("preview", 3)
    assert worked_example.so_stats()["writes"] == 0
