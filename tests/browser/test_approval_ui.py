"""Approval in the Prefect UI: a paused sync-users run, its preview artifact and the Resume form, in Chromium."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import httpx
import pytest

from scimflow.config import load_config
from tests.browser.chromium import CHROMIUM
from tests.flows.flowkit import params, start_paused
from tests.reliability.readme import writing_figures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.prefect,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

#: Where ``make figures`` keeps the docs' screenshots (a plain test run writes them to its temp folder).
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
CREATED = {"ola.hansen@contoso.com", "per.berg@contoso.com"}  # the worked example's two planned creates
COMMENT = "Preview checked: 2 creates, 1 update, 1 retirement."
APPROVER = "kari.nordmann@contoso.com"


def _preview(api_url: str, run_id: str, key: str) -> str:
    """The preview artifact's markdown, read through the REST API."""
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
    (artifact,) = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=30).json()
    return str(artifact["data"])


def test_approve_in_the_prefect_ui_applies_the_plan(ui_server, worked_example, chromium_page, tmp_path):
    """An approver reads the preview artifact, approves in the UI's Resume form, and the run applies."""
    from playwright.sync_api import expect
    from prefect.flow_runs import resume_flow_run

    page = chromium_page
    img = DOCS_IMG if writing_figures() else tmp_path

    expect.set_options(timeout=20_000)
    img.mkdir(parents=True, exist_ok=True)
    run = start_paused(params(worked_example, approval_timeout=300))
    run_id = str(run.id)
    key = f"{load_config(worked_example.config).tenant_key}-preview-{run.id.hex[:12]}"  # the run's own preview
    try:
        match = re.search(r"Plan hash:\*\* `([0-9a-f]{64})`", _preview(ui_server.api_url, run_id, key))
        assert match, "the preview artifact names no plan hash"
        plan_hash = match.group(1)

        # The run page: paused, with the preview among the task runs' artifacts.
        page.goto(f"{ui_server.ui_url}/runs/flow-run/{run_id}")
        expect(page.get_by_text("Paused", exact=True).first).to_be_visible()
        page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
        page.get_by_role("heading", name="Task runs").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.get_by_role("link").filter(has=page.get_by_text(key, exact=True)).click()

        # The artifact page renders the markdown: title, plan hash, action counts.
        expect(page).to_have_url(re.compile(r"/artifacts/artifact/"))
        expect(page.get_by_role("heading", name="scimflow sync preview")).to_be_visible()
        expect(page.get_by_text(plan_hash, exact=True)).to_be_visible()
        for row in ("create 2", "update 1", "retire 1"):
            expect(page.get_by_role("row", name=row, exact=True)).to_be_visible()
        page.screenshot(path=str(img / "preview.png"))

        # Back on the run: Resume opens the form generated from ApplyApproval's JSON schema.
        page.go_back()
        page.get_by_role("button", name="Resume").click()
        form = page.get_by_role("dialog").filter(has_text="Resume Flow Run")
        expect(form.get_by_text("Approve this plan?")).to_be_visible()
        expect(form.get_by_text(plan_hash, exact=True)).to_be_visible()
        for label in ("Approve", "Approver", "Plan Hash", "Comment", "Hold Actions", "Release Held", "Hold Users"):
            expect(form.get_by_text(re.compile(rf"^{label}( \(Optional\))?$"))).to_be_visible()
        approve = form.get_by_role("switch")  # the only boolean field
        expect(approve).to_have_attribute("aria-checked", "false")
        approve.click()
        expect(approve).to_have_attribute("aria-checked", "true")
        approver, hash_box, comment = form.get_by_role("textbox").all()[:3]  # in the form's order
        expect(hash_box).to_have_value(plan_hash)  # pre-filled: the approval is bound to this plan
        approver.fill(APPROVER)
        comment.fill(COMMENT)
        page.screenshot(path=str(img / "approval-form.png"))
        form.get_by_role("button", name="Submit").click()
        expect(form).to_be_hidden()

        result = run.result(timeout=60)
    finally:
        if run.thread.is_alive():  # a failure above: reject, so the flow thread ends before the emulators
            with contextlib.suppress(Exception):
                resume_flow_run(run.id, run_input={"approve": False, "comment": "browser test teardown"})
            run.thread.join(30)

    assert (result.status, result.plan_hash, result.comment) == ("applied", plan_hash, COMMENT)
    assert result.approver == f"{APPROVER} (unverified, entered in the form)"
    state = httpx.get(f"{ui_server.api_url}/flow_runs/{run_id}", timeout=30).json()["state"]
    assert state["type"] == "COMPLETED"
    users = worked_example.users_by_name()  # GET /_emulator/snapshot on the SuperOffice emulator
    assert all(len(users.get(name, [])) == 1 for name in CREATED)
    page.reload()
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
