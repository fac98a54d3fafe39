"""Approval in the Prefect UI, as an operator sees a night of the ``contoso`` tenant, in Chromium.

A paused sync-users run of a generated tenant: its name and tags in the run page, its preview artifact
naming who is retired and updated above the counts, the whole plan as table pages and stored files, and
the Resume form with the approver field. ``make figures`` (``SCIMFLOW_WRITE_FIGURES=1``) writes the docs'
screenshots from this run; a plain test run writes them to its temp folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.config import load_config
from scimflow.plan_store import location
from scimflow.preview import md_text
from tests.browser.chromium import CHROMIUM
from tests.browser.realistic import TENANT, contoso_tenant, start_paused_as_named
from tests.flows.flowkit import Tenant, params
from tests.reliability.readme import writing_figures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.prefect,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

#: Where ``make figures`` keeps the docs' screenshots (a plain test run writes them to its temp folder).
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
APPROVER = "kari.nordmann@contoso.com"
COMMENT = "Checked the leaver and the role changes with HR."
RUN_NAME = re.compile(rf"^{TENANT}-approve-\d{{4}}-\d{{2}}-\d{{2}}T\d{{4}}Z$")  # flows/labels.py: name_for


@pytest.fixture
def contoso() -> Any:
    """The generated ``contoso`` tenant on fresh emulators, in a folder named as an operator's would be (the
    preview shows its paths: ``/tmp/scimflow-…/contoso/.scimflow/…``, not a pytest temp path)."""
    with tempfile.TemporaryDirectory(prefix="scimflow-") as root, contoso_tenant(Path(root) / "contoso") as tenant:
        yield tenant


def _artifact(api_url: str, run_id: str, key: str) -> dict[str, Any]:
    """The run's artifact ``key``, read through the REST API."""
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
    (artifact,) = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=30).json()
    return dict(artifact)


def _stored_plan(tenant: Tenant, plan_dir: str) -> list[dict[str, Any]]:
    """The rows of the plan copy in the plan store (``plan_store``: a folder beside the config by default)."""
    url = location(load_config(tenant.config), plan_dir)
    folder = Path(url.removeprefix("file://"))
    local, stored = (Path(plan_dir) / "plan.jsonl").read_bytes(), (folder / "plan.jsonl").read_bytes()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(local).digest()
    return [json.loads(line) for line in stored.splitlines()]


def test_an_operator_reads_who_is_affected_and_approves_in_the_ui(ui_server, contoso, chromium_page, tmp_path):
    """The run's name and tags, the named retiree and updates in the preview, then the approver in the form."""
    from playwright.sync_api import expect
    from prefect.flow_runs import resume_flow_run

    page = chromium_page
    img = DOCS_IMG if writing_figures() else tmp_path
    expect.set_options(timeout=20_000)
    img.mkdir(parents=True, exist_ok=True)
    run = start_paused_as_named(params(contoso, approval_timeout=300))
    run_id = str(run.id)
    keys = {kind: f"{TENANT}-{kind}-{run.id.hex[:12]}" for kind in ("preview", "plan")}
    try:
        flow_run = httpx.get(f"{ui_server.api_url}/flow_runs/{run_id}", timeout=30).json()
        assert RUN_NAME.match(flow_run["name"]), flow_run["name"]
        assert {"tenant:contoso", "target:superoffice"} <= set(flow_run["tags"])
        preview = str(_artifact(ui_server.api_url, run_id, keys["preview"])["data"])
        plan_hash = re.search(r"Plan hash:\*\* `([0-9a-f]{64})`", preview).group(1)  # type: ignore[union-attr]
        plan_dir = re.search(r"Plan files:\*\* `([^`]+)`", preview).group(1)  # type: ignore[union-attr]
        rows = _stored_plan(contoso, plan_dir)
        retired = sorted(r["key"] for r in rows if r["action"] == "retire")
        largest = max((r for r in rows if r["action"] == "update"), key=lambda r: (len(r["changes"]), r["key"]))
        assert retired, "the generated tenant's plan retires nobody"
        counts_at = preview.index("| action | count |")
        assert all(preview.index(md_text(k)) < counts_at for k in [*retired, largest["key"]])
        page_one = _artifact(ui_server.api_url, run_id, f"{keys['plan']}-1")
        table = page_one["data"] if isinstance(page_one["data"], list) else json.loads(page_one["data"])
        assert len(table) == len(rows) and [r["#"] for r in table] == list(range(1, len(rows) + 1))

        # The run page: paused, named for the tenant, the mode and the time, tagged with the tenant.
        page.goto(f"{ui_server.ui_url}/runs/flow-run/{run_id}")
        expect(page.get_by_text("Paused", exact=True).first).to_be_visible()
        expect(page.get_by_text(flow_run["name"], exact=True).first).to_be_visible()
        expect(page.get_by_text("tenant:contoso", exact=True).first).to_be_visible()
        expect(page.get_by_role("link", name="sync-users").first).to_be_visible()
        expect(page.get_by_text("scimflow.pipeline").first).to_be_visible()  # the run's logs, loaded
        page.screenshot(path=str(img / "run.png"))
        page.get_by_role("tablist").get_by_text("Artifacts", exact=True).click()
        page.get_by_role("heading", name="Task runs").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.get_by_role("link").filter(has=page.get_by_text(keys["preview"], exact=True)).click()

        # The preview names who is affected before the counts: the retiree and the largest update.
        expect(page).to_have_url(re.compile(r"/artifacts/artifact/"))
        expect(page.get_by_role("heading", name="scimflow sync preview")).to_be_visible()
        expect(page.get_by_role("heading", name="Who is affected")).to_be_visible()
        for key in retired:
            expect(page.get_by_role("cell", name=key, exact=True).first).to_be_in_viewport()  # above the fold
        expect(page.get_by_role("cell", name=largest["key"], exact=True).first).to_be_visible()
        expect(page.get_by_text(plan_hash, exact=True)).to_be_visible()
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
        expect(approver).to_have_value("")  # required to approve, never pre-filled
        expect(hash_box).to_have_value(plan_hash)  # pre-filled: the approval is bound to this plan
        approver.fill(APPROVER)
        comment.fill(COMMENT)
        page.screenshot(path=str(img / "approval-form.png"))
        form.get_by_role("button", name="Submit").click()
        expect(form).to_be_hidden()

        result = run.result(timeout=120)
    finally:
        if run.thread.is_alive():  # a failure above: reject, so the flow thread ends before the emulators
            with contextlib.suppress(Exception):
                resume_flow_run(run.id, run_input={"approve": False, "comment": "browser test teardown"})
            run.thread.join(30)

    assert (result.status, result.plan_hash, result.comment) == ("applied", plan_hash, COMMENT)
    assert result.approver == f"{APPROVER} (unverified, entered in the form)"
    state = httpx.get(f"{ui_server.api_url}/flow_runs/{run_id}", timeout=30).json()["state"]
    assert state["type"] == "COMPLETED"
    users = contoso.users_by_name()  # GET /_emulator/snapshot on the SuperOffice emulator
    assert all(users.get(k) and all(u["Deleted"] for u in users[k]) for k in retired), "a retiree is still active"
    page.reload()
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
