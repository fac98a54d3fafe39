"""Alerts with counts: the Prefect events the ``sync-users`` flow emits for an operator to act on.

Each event names the tenant in its resource's labels and carries the counts in its payload;
``deployments/notifications.py`` turns each into a notification whose subject and body are templates over
them (the run's link comes from the flow run the event relates to, added by Prefect from the run context):

- :data:`SOURCE_UNHEALTHY`: the source judged unhealthy, nothing applied: the Entra users seen against
  ``min_source_users``, the last successful run's count and ``max_source_drop``, and the guardrails' reasons;
- :data:`HELD_OVER_BUDGET`: change classes over their guardrail budget are held: the rows per held class,
  the budgets' reasons, and whether the run waits for an approver to release them;
- :data:`APPROVAL_WAITING`: the run is about to pause for its approval form: the plan's counts and hash.

The resource is the tenant (``prefect.resource.id`` = ``scimflow.tenant.<key>``, with the labels
``prefect.resource.name`` and ``scimflow.tenant`` = the key), so one automation serves every tenant and
its notification says which.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from scimflow.config import Config
from scimflow.pipeline import PlanOutcome, open_store
from scimflow.sync_params import SyncParams
from scimflow.vocab import ROW_ACTIONS

__all__ = [
    "ALERT_EVENTS",
    "APPROVAL_WAITING",
    "HELD_OVER_BUDGET",
    "SOURCE_UNHEALTHY",
    "alert_approval_waiting",
    "alert_on_plan",
    "plan_counts",
    "tenant_resource",
    "waits_for_approver",
]

SOURCE_UNHEALTHY = "scimflow.sync.source-unhealthy"
HELD_OVER_BUDGET = "scimflow.sync.held-over-budget"
APPROVAL_WAITING = "scimflow.sync.approval-waiting"
#: Every alert event the flow emits.
ALERT_EVENTS: tuple[str, ...] = (SOURCE_UNHEALTHY, HELD_OVER_BUDGET, APPROVAL_WAITING)


def tenant_resource(tenant_key: str) -> dict[str, str]:
    """The event resource naming the tenant (its labels are what the notification templates read)."""
    return {
        "prefect.resource.id": f"scimflow.tenant.{tenant_key}",
        "prefect.resource.name": tenant_key,
        "scimflow.tenant": tenant_key,
    }


def plan_counts(planned: PlanOutcome) -> dict[str, int]:
    """The plan's rows per action (changes, quarantines, conflicts), zeros included."""
    return {action: int(planned.summary.get(action, 0) or 0) for action in ROW_ACTIONS}


def _guardrails(planned: PlanOutcome) -> dict[str, Any]:
    value = planned.summary.get("guardrails")
    return value if isinstance(value, dict) else {}


def _emit(config: Config, event: str, payload: dict[str, Any]) -> None:
    emit_event(event=event, resource=tenant_resource(config.tenant_key), payload=payload)


def waits_for_approver(params: SyncParams) -> bool:
    """Whether a run with these parameters pauses for an approver who can release classes held over budget
    (``approve`` mode, or ``auto`` with ``wait_for_held``; not ``sync --approve``), rather than ending with
    them held."""
    if params.cli_approved:
        return False
    return params.mode == "approve" or (params.mode == "auto" and params.wait_for_held)


def alert_on_plan(config: Config, planned: PlanOutcome, params: SyncParams) -> None:
    """Emit :data:`SOURCE_UNHEALTHY` or :data:`HELD_OVER_BUDGET` for a plan the guardrails did not pass
    (nothing for a plan within its budgets)."""
    mode = params.mode
    guardrails = _guardrails(planned)
    reasons = [str(r) for r in guardrails.get("reasons", [])]
    if planned.verdict_name == "source_unhealthy":
        with open_store(config) as store:
            previous = store.last_successful_source_count()
        g = config.guardrails
        payload: dict[str, Any] = {
            "entra_users": planned.source_users,
            "min_source_users": g.min_source_users,
            "previous_users": previous,
            "max_source_drop": str(g.max_source_drop),
            "max_drop_users": g.max_source_drop.limit(previous) if previous else None,
            "reasons": reasons,
            "plan_hash": planned.plan_hash,
            "mode": mode,
        }
        _emit(config, SOURCE_UNHEALTHY, payload)
    elif planned.held_classes:
        counts = plan_counts(planned)
        payload = {
            "held": {cls: counts.get(cls, 0) for cls in planned.held_classes},
            "held_rows": sum(counts.get(cls, 0) for cls in planned.held_classes),
            "reasons": reasons,
            "counts": counts,
            "plan_hash": planned.plan_hash,
            "mode": mode,
            "waits_for_approver": waits_for_approver(params),
        }
        _emit(config, HELD_OVER_BUDGET, payload)


def alert_approval_waiting(config: Config, planned: PlanOutcome) -> None:
    """Emit :data:`APPROVAL_WAITING`: the run pauses for its form; the plan's counts, hash and held classes."""
    counts = plan_counts(planned)
    payload = {
        "counts": counts,
        "changes": planned.change_rows,
        "plan_hash": planned.plan_hash,
        "held": {cls: counts.get(cls, 0) for cls in planned.held_classes},
    }
    _emit(config, APPROVAL_WAITING, payload)
