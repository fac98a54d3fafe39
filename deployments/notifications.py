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
- ``scimflow: sync waiting for approval`` fires when a run pauses for its approval form.

Every notification names the tenant (the run's ``tenant:<key>`` tag, set by the flow) and links the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from prefect.automations import Automation, EventTrigger, SendNotification
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from scimflow.apply import PARTIAL_STATE_NAMES

__all__ = ["AUTOMATIONS", "AutomationSpec", "ensure_automations"]

FLOW_NAME = "sync-users"
#: The run's page in the UI, or its id where the server has no UI URL (``ui_url`` renders None then).
_RUN_LINK = "{{ flow_run|ui_url or 'flow run id ' ~ flow_run.id }}"
#: The run's tenant, from its ``tenant:<key>`` tag (flows/labels.py).
_TENANT = "{% for t in flow_run.tags if t.startswith('tenant:') %}{{ t[7:] }}{% else %}(no tenant tag){% endfor %}"
#: The exit-3 states an operator is told about (a preview with changes is expected, not news).
_UNAPPLIED = sorted(PARTIAL_STATE_NAMES - {"Preview"})


@dataclass(frozen=True)
class AutomationSpec:
    """What one automation listens for and what its notification says."""

    name: str
    events: frozenset[str]
    subject: str
    body: str


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
        events=frozenset({"prefect.flow-run.Paused"}),
        subject="scimflow: " + _TENANT + ": sync run {{ flow_run.name }} waits for approval",
        body=(
            "Tenant " + _TENANT + ": the sync run {{ flow_run.name }} published its preview and waits for an "
            "approver.\n"
            "Review the plan and fill in the approval form: " + _RUN_LINK
        ),
    ),
)


def _automation(spec: AutomationSpec, block_document_id: object, flow_name: str) -> Automation:
    return Automation(
        name=spec.name,
        description=f"scimflow notification for flow {flow_name!r}",
        trigger=EventTrigger(
            expect=set(spec.events),
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
            posture="Reactive",
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=spec.subject, body=spec.body)],
    )


async def ensure_automations(block_name: str, *, flow_name: str = FLOW_NAME) -> list[Automation]:
    """Create (or replace) the scimflow automations, notifying through the block named ``block_name``."""
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
        made = []
        existing = {a.name: a for a in await client.read_automations()}
        for spec in AUTOMATIONS:
            if spec.name in existing:
                await client.delete_automation(existing[spec.name].id)
            made.append(await _automation(spec, doc.id, flow_name).acreate())
        return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", required=True, help="name of the Prefect notification block to send through")
    parser.add_argument("--flow", default=FLOW_NAME, help="flow name to watch (default: sync-users)")
    args = parser.parse_args(argv)
    try:
        made = asyncio.run(ensure_automations(args.block, flow_name=args.flow))
    except LookupError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    for a in made:
        sys.stdout.write(f"automation ready: {a.name} ({a.id})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
