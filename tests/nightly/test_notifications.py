"""Notifications as code (deployments/notifications.py): a failed sync and a sync waiting for approval each
post to the notification block, here a CustomWebhookNotificationBlock aimed at a receiver in the test."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
import yaml

from scimflow.config import load_config
from scimflow.emulators.serve import free_port
from tests.flows.flowkit import params, start_paused, wait_for

from .nightkit import WIDE, Webhook

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def automations(webhook: Webhook) -> Iterator[str]:
    """The scimflow automations on the session server, notifying through a webhook block (removed after)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from deployments.notifications import AUTOMATIONS, ensure_automations

    name = f"scimflow-test-{uuid.uuid4().hex[:8]}"
    block = CustomWebhookNotificationBlock(
        name=name, url=webhook.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    block.save(name, overwrite=True)
    made = asyncio.run(ensure_automations(name))
    assert sorted(a.name for a in made) == sorted(s.name for s in AUTOMATIONS)
    yield name

    async def remove() -> None:
        async with get_client() as client:
            for a in made:
                await client.delete_automation(a.id)

    asyncio.run(remove())


def _unreachable_superoffice(tenant) -> str:
    """A copy of the tenant's config (same folder, so its file: references hold) whose SuperOffice is down."""
    data = yaml.safe_load(tenant.config.read_text())
    dead = f"https://127.0.0.1:{free_port()}"
    data["superoffice"].update(webapi_url=f"{dead}/Cust12345", login_url=f"{dead}/login")
    path = tenant.config.with_name("unreachable.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_a_failed_run_and_a_paused_run_both_notify(tenant_factory, webhook, automations):
    """A failed run (SuperOffice unreachable), a paused one and its rejection each reach the webhook, naming the tenant."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.flow_runs import resume_flow_run

    from flows.sync import SyncParams, sync_users

    t = tenant_factory(guardrails=WIDE)
    failing = f"nightly-fail-{uuid.uuid4().hex[:8]}"
    box: dict[str, BaseException] = {}

    bad = SyncParams(config=_unreachable_superoffice(t), mode="auto", poll_interval=1)

    def fail() -> None:
        try:
            sync_users.with_options(flow_run_name=failing)(bad)
        except BaseException as exc:  # the run is meant to fail
            box["error"] = exc

    thread = threading.Thread(target=fail, daemon=True)
    thread.start()
    paused = start_paused(params(t))
    with get_client(sync_client=True) as client:
        paused_name = client.read_flow_run(paused.id).name
    try:
        wait_for(
            lambda: (
                any(failing in s and "failed" in s for s in webhook.subjects())
                and any(paused_name in s and "approval" in s for s in webhook.subjects())
            ),
            timeout=90,
            step=0.5,
        )
    finally:
        resume_flow_run(paused.id, run_input={"approve": False, "comment": "notification test"})
        paused.result()
        thread.join(60)
    assert "error" in box, "the run against an unreachable SuperOffice should have failed"
    wait_for(lambda: any(paused_name in s and "ended Rejected" in s for s in webhook.subjects()), timeout=60)
    (failed,) = [b for b in webhook.received if failing in b["subject"]]
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[failing])))
    assert run.state is not None and run.state.is_failed()
    assert "ended Failed" in failed["body"] and str(run.id) in failed["body"]
    (waiting,) = [b for b in webhook.received if paused_name in b["subject"] and "approval" in b["subject"]]
    assert str(paused.id) in waiting["body"] and "approval form" in waiting["body"]
    (rejected,) = [b for b in webhook.received if paused_name in b["subject"] and "Rejected" in b["subject"]]
    assert "notification test" in rejected["body"] and str(paused.id) in rejected["body"]
    tenant = load_config(t.config).tenant_key
    assert all(f"Tenant {tenant}:" in b["body"] for b in (failed, waiting, rejected))
