"""Notifications as code: Prefect automations for a failed sync and for a sync waiting for approval.

Run once per Prefect server (idempotent: existing automations of the same name are replaced)::

    python -m deployments.notifications --block <notification-block-name>

``--block`` names any Prefect notification block (Slack, Microsoft Teams, e-mail, a custom webhook...)
created beforehand in the UI or with ``prefect block create``. The automations match flow runs of the
``sync-users`` flow:

- ``scimflow: sync failed`` fires on a Failed or Crashed run (an error, an unhealthy source, failed writes);
- ``scimflow: sync left changes unapplied`` fires on a run that ended Partial, Rejected or
  ApprovalTimedOut (exit 3: held, drifted, rejected, timed out; :data:`scimflow.apply.PARTIAL_STATE_NAMES`
  but the preview's);
- ``scimflow: sync waiting for approval`` fires when a run pauses for its approval form, with the plan's
  counts (the flow's ``scimflow.sync.approval-waiting`` event, :mod:`flows.alerts`);
- ``scimflow: source unhealthy`` and ``scimflow: changes held over budget`` fire on the flow's alert events,
  with the Entra users seen against the thresholds, and the rows held per class;
- ``scimflow: <tenant>: <deployment> late``, one per ``deployments/*/alerts.yaml``: a run of that tenant's
  nightly deployment not finished by ``late_after`` (:mod:`deployments.late_alerts`, a proactive trigger).

Every notification names the tenant (the run's ``tenant:<key>`` tag, set by the flow, or the alert event's
``scimflow.tenant`` label) and links the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect.automations import Automation, EventTrigger, SendNotification
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import ObjectNotFound

from deployments.late_alerts import LateAlert, LateAlertError, late_automation, late_window, load_late_alerts
from flows.alerts import APPROVAL_WAITING, HELD_OVER_BUDGET, SOURCE_UNHEALTHY
from scimflow.apply import PARTIAL_STATE_NAMES

__all__ = ["AUTOMATIONS", "SETTINGS", "AutomationSpec", "ensure_automations"]

FLOW_NAME = "sync-users"
#: The run's page in the UI, or its id where the server has no UI URL (``ui_url`` renders None then).
_RUN_LINK = "{{ flow_run|ui_url or 'flow run id ' ~ flow_run.id }}"
#: The run's tenant, from its ``tenant:<key>`` tag (flows/labels.py).
_TENANT = "{% for t in flow_run.tags if t.startswith('tenant:') %}{{ t[7:] }}{% else %}(no tenant tag){% endfor %}"
#: The tenant an alert event is about (its resource's label, flows/alerts.py).
_ALERT_TENANT = "{{ event.resource['scimflow.tenant'] }}"
#: The plan's counts in an alert event's payload.
_PLAN_COUNTS = (  # subscripts, not attributes: a dict's ``update`` method would win over its key
    "{% set c = event.payload['counts'] %}{{ c['create'] }} to create, {{ c['update'] }} to update, "
    "{{ c['retire'] }} to retire, {{ c['reactivate'] }} to reactivate ({{ c['quarantine'] }} quarantined, "
    "{{ c['conflict'] }} in conflict)"
)
_HELD = "{% for cls, n in event.payload.held|dictsort %}{{ n }} {{ cls }}{{ ', ' if not loop.last }}{% endfor %}"
#: The ``alerts.yaml`` of every tenant folder (deployments/late_alerts.py).
SETTINGS = Path(__file__).resolve().parent
#: The exit-3 states an operator is told about (a preview with changes is expected, not news).
_UNAPPLIED = sorted(PARTIAL_STATE_NAMES - {"Preview"})


@dataclass(frozen=True)
class AutomationSpec:
    """What one automation listens for and what its notification says."""

    name: str
    events: frozenset[str]
    subject: str
    body: str
    #: what the events are about: a flow run (its state changes) or a tenant (the flow's alert events)
    about: Literal["flow-run", "tenant"] = "flow-run"


AUTOMATIONS: tuple[AutomationSpec, ...] = (
    AutomationSpec(
        name="scimflow: sync failed",
        events=frozenset({"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}),
        subject="scimflow: " + _TENANT + ": sync run {{ flow_run.name }} failed",
        body=(
            "Tenant " + _TENANT + ": the sync run {{ flow_run.name }} of {{ flow.name }} ended "
            "{{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
            "Nothing further was applied. Open the run: " + _RUN_LINK
        ),
    ),
    AutomationSpec(
        name="scimflow: sync left changes unapplied",
        events=frozenset(f"prefect.flow-run.{name}" for name in _UNAPPLIED),
        subject="scimflow: " + _TENANT + ": sync run {{ flow_run.name }} ended {{ flow_run.state.name }}",
        body=(
            "Tenant " + _TENANT + ": the sync run {{ flow_run.name }} ended {{ flow_run.state.name }}: "
            "{{ flow_run.state.message }}\nSome planned changes were not applied. Open the run: " + _RUN_LINK
        ),
    ),
    AutomationSpec(
        name="scimflow: sync waiting for approval",
        events=frozenset({APPROVAL_WAITING}),
        subject="scimflow: " + _ALERT_TENANT + ": sync run {{ flow_run.name }} waits for approval",
        body=(
            "Tenant " + _ALERT_TENANT + ": the sync run {{ flow_run.name }} published its preview and waits for an "
            "approver.\nPlan {{ event.payload.plan_hash[:12] }}: " + _PLAN_COUNTS + "."
            "{% if event.payload.held %} Held over budget unless released: " + _HELD + ".{% endif %}\n"
            "Review the plan and fill in the approval form: " + _RUN_LINK
        ),
        about="tenant",
    ),
    AutomationSpec(
        name="scimflow: source unhealthy",
        events=frozenset({SOURCE_UNHEALTHY}),
        subject="scimflow: " + _ALERT_TENANT + ": source unhealthy "
        "({{ event.payload.entra_users }} Entra users), nothing applied",
        body=(
            "Tenant " + _ALERT_TENANT + ": the sync run {{ flow_run.name }} judged its source unhealthy and applied "
            "nothing.\nEntra users seen: {{ event.payload.entra_users }} (min_source_users "
            "{{ event.payload.min_source_users }}"
            "{% if event.payload.previous_users is not none %}; the last successful run saw "
            "{{ event.payload.previous_users }}, max_source_drop {{ event.payload.max_source_drop }} = "
            "{{ event.payload.max_drop_users }}{% endif %}).\n"
            "Why: {{ event.payload.reasons|join('; ') }}.\n"
            "Check the Entra credential and the group scope (scimflow doctor). Open the run: " + _RUN_LINK
        ),
        about="tenant",
    ),
    AutomationSpec(
        name="scimflow: changes held over budget",
        events=frozenset({HELD_OVER_BUDGET}),
        subject="scimflow: " + _ALERT_TENANT + ": changes held over budget: " + _HELD,
        body=(
            "Tenant " + _ALERT_TENANT + ": the sync run {{ flow_run.name }} holds changes over their guardrail "
            "budget: " + _HELD + " ({{ event.payload.held_rows }} rows in all).\n"
            "Why: {{ event.payload.reasons|join('; ') }}.\n"
            "Plan {{ event.payload.plan_hash[:12] }}: " + _PLAN_COUNTS + ".\n"
            "{% if event.payload.waits_for_approver %}The run waits for an approver, who can let them through with "
            "release_held in the form{% else %}They are not applied; the next run plans them again{% endif %}. "
            "Open the run: " + _RUN_LINK
        ),
        about="tenant",
    ),
)


def _automation(spec: AutomationSpec, block_document_id: object, flow_name: str) -> Automation:
    resource = "scimflow.tenant.*" if spec.about == "tenant" else "prefect.flow-run.*"
    return Automation(
        name=spec.name,
        description=f"scimflow notification for flow {flow_name!r}",
        trigger=EventTrigger(
            expect=set(spec.events),
            match={"prefect.resource.id": resource},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            posture="Reactive",
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=spec.subject, body=spec.body)],
    )


async def _late_automation(client: PrefectClient, alert: LateAlert, block_document_id: object) -> Automation:
    try:
        deployment = await client.read_deployment_by_name(alert.deployment)
    except ObjectNotFound:
        msg = (
            f"{alert.source}: deployment {alert.deployment!r} is not on this Prefect server; deploy it first "
            "(prefect --no-prompt deploy --all), or leave this tenant's alerts.yaml out (--late-settings)"
        )
        raise LateAlertError(msg) from None
    schedules = [s for s in deployment.schedules if s.active] or list(deployment.schedules)
    crons = [str(getattr(s.schedule, "cron", None) or f"{type(s.schedule).__name__}, not a cron") for s in schedules]
    within = late_window(alert, crons)
    return late_automation(alert, deployment.id, within, block_document_id)


async def ensure_automations(
    block_name: str, *, flow_name: str = FLOW_NAME, late: Sequence[LateAlert] = ()
) -> list[Automation]:
    """Create (or replace, by name) the scimflow automations, notifying through the block named
    ``block_name``: :data:`AUTOMATIONS`, and a late-nightly alert per entry of ``late``
    (:func:`deployments.late_alerts.load_late_alerts`). Raises :class:`LookupError` for a missing block,
    :class:`~deployments.late_alerts.LateAlertError` for a late alert it cannot make (nothing is changed then).
    """
    async with get_client() as client:
        doc = None
        for block_type in await client.read_block_types():
            try:
                doc = await client.read_block_document_by_name(block_name, block_type.slug)
            except ObjectNotFound:  # not a block of this type; try the next
                continue
            break
        if doc is None:
            msg = f"no notification block named {block_name!r} on this Prefect server"
            raise LookupError(msg)
        wanted = [_automation(spec, doc.id, flow_name) for spec in AUTOMATIONS]
        wanted += [await _late_automation(client, alert, doc.id) for alert in late]
        made = []
        existing = {a.name: a for a in await client.read_automations()}
        for automation in wanted:
            if automation.name in existing:
                await client.delete_automation(existing[automation.name].id)
            made.append(await automation.acreate())
        return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", required=True, help="name of the Prefect notification block to send through")
    parser.add_argument("--flow", default=FLOW_NAME, help="flow name to watch (default: sync-users)")
    parser.add_argument(
        "--late-settings",
        action="append",
        type=Path,
        metavar="ALERTS_YAML",
        help="a tenant's alerts.yaml (repeatable; default: every deployments/*/alerts.yaml)",
    )
    parser.add_argument("--no-late", action="store_true", help="create no late-nightly alerts")
    args = parser.parse_args(argv)
    paths = [] if args.no_late else (args.late_settings or sorted(SETTINGS.glob("*/alerts.yaml")))
    try:
        late = load_late_alerts(paths)
        made = asyncio.run(ensure_automations(args.block, flow_name=args.flow, late=late))
    except (LookupError, LateAlertError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    for a in made:
        sys.stdout.write(f"automation ready: {a.name} ({a.id})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
