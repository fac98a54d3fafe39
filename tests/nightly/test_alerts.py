"""Alerts (issue 18): a late nightly run raises the proactive late alert of its tenant's deployment; an
unhealthy source, changes held over budget and an approval waiting each notify with their counts; a clean
run in time raises none of them. The notifications go through a CustomWebhookNotificationBlock to a
receiver in the test, from the session's real Prefect server (its triggers service evaluates every 5 s)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deployments.late_alerts import LateAlert, LateAlertError, late_window, load_late_alerts
from scimflow.config import load_config
from scimflow.pipeline import open_store
from tests.flows.flowkit import params, run_flow_state, start_paused, wait_for

from .nightkit import WIDE, Webhook

ROOT = Path(__file__).resolve().parents[2]


# --- settings: no server -----------------------------------------------------------------------------


def _settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


def test_the_example_settings_make_a_four_hour_window_on_a_two_oclock_schedule() -> None:
    """The committed example (late_after "06:00") against its nightly's cron 0 2 * * * is a 4-hour window."""
    (alert,) = load_late_alerts([ROOT / "deployments" / "example" / "alerts.yaml"])
    assert (alert.tenant, alert.deployment) == ("example", "sync-users/nightly")
    assert late_window(alert, ["0 2 * * *"]) == timedelta(hours=4)
    assert late_window(LateAlert("t", "sync-users/n", "01:30", "x"), ["45 22 * * *"]) == timedelta(hours=2, minutes=45)
    assert late_window(LateAlert("t", "sync-users/n", "4h30m", "x"), []) == timedelta(hours=4, minutes=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tenant: a\nlate_after: 6:00\n",
            'late_after: Value error, a quoted time of day ("06:00") or duration ("4h", "90m"), not 360',
        ),
        ("tenant: a\nlate_after: soon\n", "'soon' is neither a time of day"),
        ("tenant: a\nlate_after: 5s\n", "shorter than 10 s"),
        ("tenant: a\nlate_after: 4h\nlate_afterr: 5h\n", "late_afterr: Extra inputs are not permitted"),
        ("tenant: a\ndeployment: nightly\nlate_after: 4h\n", "deployment: Value error, <flow name>/<deployment name>"),
        ("late_after: 4h\n", "tenant: Field required"),
        ("tenant: '{{ x }}'\nlate_after: 4h\n", "tenant: Value error, a tenant key"),
    ],
)
def test_a_bad_settings_file_is_refused_naming_the_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    """A mistyped alerts.yaml is refused with the file and the field named, never half-read."""
    path = _settings(tmp_path, text)
    with pytest.raises(LateAlertError) as err:
        load_late_alerts([path])
    assert str(path) in str(err.value) and expected in str(err.value)


def test_a_time_of_day_needs_a_fixed_daily_schedule() -> None:
    """late_after "06:00" on a deployment without one daily cron start is refused, asking for a duration."""
    alert = LateAlert("t", "sync-users/n", "06:00", "deployments/t/alerts.yaml")
    for crons in ([], ["*/30 * * * *"], ["0 2 * * *", "0 3 * * *"], ["IntervalSchedule, not a cron"]):
        with pytest.raises(LateAlertError, match=r"deployments/t/alerts.yaml: .*give a duration instead"):
            late_window(alert, crons)
    with pytest.raises(LateAlertError, match="the schedule's own start time"):
        late_window(alert, ["0 6 * * *"])


def _render(automation_name: str, payload: dict[str, Any]) -> tuple[str, str]:
    """An alert's subject and body as Prefect's server renders them for an event of the flow's with ``payload``."""
    from datetime import UTC, datetime

    from prefect.server.events.jinja_filters import all_filters
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import register_user_template_filters, render_user_template_sync

    from deployments.notifications import AUTOMATIONS
    from flows.alerts import tenant_resource

    register_user_template_filters(all_filters)
    (spec,) = [a for a in AUTOMATIONS if a.name == automation_name]
    event = ReceivedEvent(
        occurred=datetime.now(UTC),
        event=next(iter(spec.events)),
        resource=tenant_resource("contoso"),
        payload=payload,
        id=uuid.uuid4(),
    )
    context = {"event": event, "flow_run": {"name": "contoso-auto-2026-12-03T0100Z", "id": "RUN-ID"}}
    return render_user_template_sync(spec.subject, context), render_user_template_sync(spec.body, context)


def test_an_unhealthy_source_after_a_drop_names_the_last_count_and_the_budget() -> None:
    """A source judged unhealthy by max_source_drop shows the users seen, the last run's count and the budget."""
    subject, body = _render(
        "scimflow: source unhealthy",
        {
            "entra_users": 40,
            "min_source_users": 1,
            "previous_users": 100,
            "max_source_drop": "20%",
            "max_drop_users": 20,
            "reasons": ["Entra users dropped by 60 (from 100 to 40), more than max_source_drop (20% = 20)"],
        },
    )
    assert subject == "scimflow: contoso: source unhealthy (40 Entra users), nothing applied"
    assert (
        "Entra users seen: 40 (min_source_users 1; the last successful run saw 100, max_source_drop 20% = 20)" in body
    )
    assert "dropped by 60" in body and "RUN-ID" in body


# --- on the server -----------------------------------------------------------------------------------


@pytest.fixture
def block(webhook: Webhook, prefect_api: Any) -> str:
    """A notification block posting ``{"subject", "body"}`` to the webhook."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = f"scimflow-alerts-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name=name, url=webhook.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(name, overwrite=True)
    return name


@contextmanager
def _automations(block: str, late: list[LateAlert]) -> Iterator[list[Any]]:
    """The scimflow automations (and ``late`` alerts) on the session server, removed afterwards."""
    from prefect.client.orchestration import get_client

    from deployments.notifications import ensure_automations

    made = asyncio.run(ensure_automations(block, late=late))
    try:
        yield made
    finally:

        async def remove() -> None:
            async with get_client() as client:
                for a in made:
                    await client.delete_automation(a.id)

        asyncio.run(remove())


@pytest.fixture
def automations(block: str) -> Iterator[list[Any]]:
    """The scimflow automations without late alerts."""
    with _automations(block, []) as made:
        yield made


def _tenant_key(tenant: Any) -> str:
    return load_config(tenant.config).tenant_key


def _deployment(name: str, cron: str | None = None) -> Any:
    """A deployment of sync-users on the session server (no worker: the test runs its flow runs)."""
    from flows.sync import sync_users

    deployment = sync_users.to_deployment(name=name, cron=cron, paused=cron is not None)
    return deployment.apply()


@dataclass
class DeploymentRun:
    """A flow run of a deployment, executed in a thread of this process as a worker's process would."""

    id: uuid.UUID
    thread: threading.Thread
    box: dict[str, Any]

    def join(self, timeout: float = 120) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow run did not finish"
        return self.box.get("state")


def _run_deployment(deployment_id: Any, p: Any) -> DeploymentRun:
    """Create a run of the deployment and execute it (Pending, Running... like a process worker)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from flows.sync import sync_users

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"params": p.model_dump(mode="json")}
        )
        client.set_flow_run_state(flow_run.id, Pending())  # as a worker does before it starts the run's process
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["state"] = run_flow(sync_users, flow_run=flow_run, parameters={"params": p}, return_type="state")
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return DeploymentRun(flow_run.id, thread, box)


def _state(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


@pytest.mark.prefect
@pytest.mark.slow
def test_a_late_nightly_raises_its_alert_and_one_in_time_none(tenant_factory, webhook, block):
    """Three tenant deployments: a run still waiting for approval after its 10 s window raises the late alert
    naming its tenant with links to the run and the deployment; so does a run no worker ever takes (it turns
    Late); a clean run done within its window raises nothing."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.states import Cancelled

    late_t = tenant_factory(guardrails=WIDE, context_identifier="Late1")
    fine_t = tenant_factory(guardrails=WIDE, context_identifier="Fine1")
    for t in (late_t, fine_t):  # create both state stores now: alembic's migration context is process-global
        open_store(load_config(t.config)).close()
    tag = uuid.uuid4().hex[:6]
    late_dep, fine_dep = _deployment(f"nightly-late-{tag}"), _deployment(f"nightly-fine-{tag}")
    down_dep = _deployment(f"nightly-down-{tag}")
    alerts = [
        LateAlert(_tenant_key(late_t), f"sync-users/nightly-late-{tag}", "10s", "late/alerts.yaml"),
        LateAlert(_tenant_key(fine_t), f"sync-users/nightly-fine-{tag}", "40s", "fine/alerts.yaml"),
        LateAlert("down1", f"sync-users/nightly-down-{tag}", "11s", "down/alerts.yaml"),
    ]
    with _automations(block, alerts) as made:
        assert {a.name for a in made} >= {a.name for a in alerts}
        late = _run_deployment(late_dep, params(late_t, mode="approve"))
        fine = _run_deployment(fine_dep, params(fine_t, mode="auto"))
        with get_client(sync_client=True) as client:  # due now, and no worker will take it
            down = client.create_flow_run_from_deployment(
                down_dep, parameters={"params": params(fine_t).model_dump(mode="json")}
            )
        started = time.monotonic()
        try:
            wait_for(lambda: bool(webhook.about("not finished by 10s")), timeout=60, step=0.5)
            assert not _state(late.id).is_final(), "the late run has not finished (it plans, or waits for approval)"
        finally:
            wait_for(lambda: _state(late.id).is_paused(), timeout=60)
            resume_flow_run(late.id, run_input={"approve": False, "comment": "late alert test"})
            late.join()
        fine_state = fine.join()
        assert fine_state.is_completed() and fine_state.name == "Completed"
        assert time.monotonic() - started < 40, "the clean run finished within its window"
        # the clean run's window ends 40 s after it became due; the triggers service looks every 5 s
        wait_for(lambda: time.monotonic() - started > 40 + 12, timeout=60, step=1)
        try:  # Late 15 s after its start (the server's late-runs service), then its 11 s window
            wait_for(lambda: bool(webhook.about("not finished by 11s")), timeout=30, step=0.5)
        finally:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(down.id, Cancelled(message="test over"), force=True)
    (alert,) = webhook.about("not finished by 10s")
    tenant = _tenant_key(late_t)
    assert alert["subject"].startswith(f"scimflow: {tenant}: nightly run ")
    assert f"Tenant {tenant}: the run " in alert["body"] and re.search(
        r"it was (Pending|Late|Running) at .* no final state since", alert["body"]
    ), alert["body"]
    assert str(late.id) in alert["body"] and str(late_dep) in alert["body"]
    assert webhook.about(_tenant_key(fine_t)) == [], "a clean run in time raises no alert of any kind"
    assert webhook.about(str(fine.id)) == []
    (never,) = webhook.about("not finished by 11s")
    assert never["subject"].startswith("scimflow: down1: nightly run ") and str(down.id) in never["body"]
    assert re.search(r"it was Late at .* no final state since", never["body"]), never["body"]


@pytest.mark.prefect
def test_a_time_of_day_is_read_against_the_deployed_schedule(block, tmp_path, capsys):
    """The late alert of a deployment scheduled at 02:00 with late_after "06:00" waits 4 hours on the server;
    a settings file naming a deployment that is not there is refused (exit 1), naming the file."""
    from prefect.client.orchestration import get_client

    from deployments.notifications import main

    name = f"nightly-clock-{uuid.uuid4().hex[:6]}"
    _deployment(name, cron="0 2 * * *")
    alert = LateAlert("clock", f"sync-users/{name}", "06:00", "clock/alerts.yaml")
    with _automations(block, [alert]) as made:
        (automation,) = [a for a in made if a.name == alert.name]

        async def read() -> Any:
            async with get_client() as client:
                return await client.read_automation(automation.id)

        stored = asyncio.run(read())
        assert stored.trigger.posture == "Proactive" and stored.trigger.within == timedelta(hours=4)
        assert stored.trigger.after == {"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Late"}
    settings = _settings(tmp_path, "tenant: gone\ndeployment: sync-users/never-deployed\nlate_after: 4h\n")
    assert main(["--block", block, "--late-settings", str(settings)]) == 1
    err = capsys.readouterr().err
    assert f"error: {settings}: deployment 'sync-users/never-deployed' is not on this Prefect server" in err

    async def names() -> set[str]:
        async with get_client() as client:
            return {a.name for a in await client.read_automations()}

    assert "scimflow: gone: sync-users/never-deployed late" not in asyncio.run(names()), "nothing was created"


@pytest.mark.prefect
def test_held_over_budget_and_approval_waiting_alerts_carry_their_counts(tenant_factory, webhook, automations):
    """Over max_retire in auto mode: an alert names the class held and its rows, and the approval alert the
    plan's counts per action with the run's link; both name the tenant."""
    from prefect.flow_runs import resume_flow_run

    t = tenant_factory(guardrails={**WIDE, "max_retire": 0})
    tenant = _tenant_key(t)
    run = start_paused(params(t, mode="auto", wait_for_held=True))
    try:
        wait_for(lambda: bool(webhook.about("held over budget")) and bool(webhook.about("waits for approval")), 60)
    finally:
        resume_flow_run(run.id, run_input={"approve": False, "comment": "alerts test"})
        result = run.result()
    counts = {
        k: result.counts.get(k, 0) for k in ("create", "update", "retire", "reactivate", "quarantine", "conflict")
    }
    assert counts["retire"] == 1 and counts["create"] > 0
    (held,) = webhook.about("held over budget")
    assert held["subject"] == f"scimflow: {tenant}: changes held over budget: 1 retire"
    assert f"Tenant {tenant}: " in held["body"] and "1 retire (1 rows in all)" in held["body"]
    assert "exceed max_retire" in held["body"] and "release_held" in held["body"]
    assert str(run.id) in held["body"]
    (waiting,) = webhook.about("waits for approval")
    assert waiting["subject"].startswith(f"scimflow: {tenant}: sync run ")
    plan = (
        f"Plan {result.plan_hash[:12]}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['retire']} to retire, {counts['reactivate']} to reactivate ({counts['quarantine']} quarantined, "
        f"{counts['conflict']} in conflict)"
    )
    assert plan in waiting["body"], waiting["body"]
    assert "Held over budget unless released: 1 retire" in waiting["body"]
    assert "approval form: " in waiting["body"] and str(run.id) in waiting["body"]
    assert webhook.about("source unhealthy") == []


@pytest.mark.prefect
def test_an_unhealthy_source_alert_gives_the_users_seen_and_the_threshold(tenant_factory, webhook, automations):
    """Below min_source_users the run fails and an alert gives the Entra users seen against the threshold."""
    t = tenant_factory(guardrails={**WIDE, "min_source_users": 1000})
    tenant = _tenant_key(t)
    state, result = run_flow_state(params(t, mode="auto"))
    assert state.is_failed() and result.status == "source_unhealthy"
    (reason,) = [r for r in result.guardrails["reasons"] if "min_source_users" in r]
    seen = int(re.search(r"has (\d+) users", reason).group(1))  # the core's own sentence
    wait_for(lambda: bool(webhook.about("source unhealthy (")), timeout=60, step=0.5)
    (alert,) = webhook.about("source unhealthy (")
    assert alert["subject"] == f"scimflow: {tenant}: source unhealthy ({seen} Entra users), nothing applied"
    assert f"Entra users seen: {seen} (min_source_users 1000)" in alert["body"]
    assert "fewer than min_source_users (1000)" in alert["body"] and str(result.flow_run_id) in alert["body"]
    assert webhook.about("held over budget") == [] and webhook.about("waits for approval") == []
