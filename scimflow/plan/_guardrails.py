"""Guardrails (ARCHITECTURE.md "Guardrails"): budgets per action class and source health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from scimflow.config import Guardrails
from scimflow.plan._planner import Plan
from scimflow.vocab import CHANGE_ACTIONS

__all__ = ["CHANGE_CLASSES", "GuardrailVerdict", "evaluate_guardrails"]

#: The action classes that change SuperOffice (and count against ``max_changes``): the vocabulary's.
CHANGE_CLASSES: tuple[str, ...] = CHANGE_ACTIONS
Verdict = Literal["ok", "over_budget", "source_unhealthy"]


@dataclass(frozen=True)
class GuardrailVerdict:
    """``verdict``, the action classes ``held`` (not to apply) and ``reasons`` (sentences)."""

    verdict: Verdict = "ok"
    held: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``guardrails`` object of summary.json."""
        return {"verdict": self.verdict, "held": list(self.held), "reasons": list(self.reasons)}


def evaluate_guardrails(
    plan: Plan,
    g: Guardrails,
    source_users: int,
    last_source_users: int | None = None,
    *,
    linked: int = 0,
    linked_missing: int = 0,
) -> GuardrailVerdict:
    """Judge ``plan`` against the budgets.

    An unhealthy source (fewer than ``min_source_users`` Entra users, or a drop from the last successful
    run larger than ``max_source_drop``) holds every change class present. The SuperOffice extract is
    judged the same way: when more of the ``linked`` SuperOffice users than ``max_source_drop`` allows are
    missing from it (``linked_missing``), it is incomplete and nothing applies (a half-read target would
    otherwise plan every linked user as a create). Otherwise ``max_retire``
    (against the managed, active SuperOffice users) holds ``retire``, and ``max_changes`` (create,
    update, retire and reactivate together, against the managed users) holds every change class present.
    """
    present = [c for c in CHANGE_CLASSES if plan.counts.get(c, 0) > 0]
    unhealthy = []
    if source_users < g.min_source_users:
        unhealthy.append(
            f"the Entra extract has {source_users} users, fewer than min_source_users ({g.min_source_users})"
        )
    if last_source_users is not None and last_source_users > 0:
        drop = last_source_users - source_users
        limit = g.max_source_drop.limit(last_source_users)
        if drop > limit:
            unhealthy.append(
                f"Entra users dropped by {drop} (from {last_source_users} to {source_users}), "
                f"more than max_source_drop ({g.max_source_drop} = {limit})"
            )
    if linked > 0 and linked_missing > g.max_source_drop.limit(linked):
        unhealthy.append(
            f"the SuperOffice extract misses {linked_missing} of the {linked} linked users, "
            f"more than max_source_drop ({g.max_source_drop} = {g.max_source_drop.limit(linked)})"
        )
    if unhealthy:
        return GuardrailVerdict("source_unhealthy", present, [*unhealthy, "nothing is applied"])
    held: list[str] = []
    reasons: list[str] = []
    retire = plan.counts.get("retire", 0)
    retire_limit = g.max_retire.limit(plan.managed_active)
    if retire > retire_limit:
        held.append("retire")
        reasons.append(
            f"{retire} retirements exceed max_retire ({g.max_retire} of {plan.managed_active} managed active users "
            f"= {retire_limit}); retire is held"
        )
    changes = sum(plan.counts.get(c, 0) for c in CHANGE_CLASSES)
    change_limit = g.max_changes.limit(plan.managed)
    if changes > change_limit:
        held.extend(c for c in present if c not in held)
        reasons.append(
            f"{changes} changes exceed max_changes ({g.max_changes} of {plan.managed} managed users = {change_limit}); "
            f"{', '.join(present)} held"
        )
    held = [c for c in CHANGE_CLASSES if c in held]
    return GuardrailVerdict("over_budget" if held else "ok", held, reasons)
