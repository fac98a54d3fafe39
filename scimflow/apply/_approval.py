"""The sync run's decisions around approval, as plain functions (the flow only wires them).

- who approved a plan: known from *how* the approval was obtained (:data:`ApprovedBy`), never guessed from
  a comment;
- which action classes are held: the form's, plus the classes over their guardrail budget when nobody saw
  the plan (auto mode) or the command line approved it blind (:func:`held_classes_for`);
- whether a second approval round runs for the held classes (:func:`second_round`);
- how the run ended (:class:`Conclusion`), handed to the flow's reporting as one typed object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from scimflow.apply._outcome import ApplyReport, SyncStatus
    from scimflow.apply._rows import PlanRow

__all__ = [
    "Approval",
    "ApprovedBy",
    "Conclusion",
    "approver_label",
    "automatic_approval",
    "held_by",
    "held_classes_for",
    "second_round",
]

#: How an approval was obtained: the command line (``--approve``), auto mode within the guardrails, the
#: approval form (Prefect UI or API), or nobody (the form timed out, which rejects).
ApprovedBy = Literal["cli", "auto", "form", "timeout"]

_LABELS: dict[str, str] = {
    "cli": "cli",
    "auto": "auto",
    "form": "unknown (Prefect UI or API)",
    "timeout": "timeout",
}


@dataclass(frozen=True)
class Approval:
    """One approval decision: the form's four fields and who gave it."""

    approve: bool
    by: ApprovedBy
    comment: str = ""
    hold_actions: tuple[str, ...] = ()
    hold_users: tuple[str, ...] = ()

    def form_values(self) -> dict[str, object]:
        """The form's values as the state store records them."""
        return {
            "approve": self.approve,
            "comment": self.comment,
            "hold_actions": list(self.hold_actions),
            "hold_users": list(self.hold_users),
        }


def automatic_approval(mode: str, *, cli_approved: bool) -> Approval | None:
    """The approval given without the form (the command line's, or auto mode's); ``None``: ask the form."""
    if cli_approved:
        return Approval(approve=True, by="cli", comment="approved on the command line")
    if mode == "auto":
        return Approval(approve=True, by="auto", comment="auto: within the guardrails")
    return None


def approver_label(approval: Approval | None) -> str:
    """The approver as recorded and reported: ``cli``, ``auto``, ``timeout`` or the form's (unknown user)."""
    return _LABELS["timeout" if approval is None else approval.by]


def held_classes_for(approval: Approval, over_budget: Iterable[str]) -> set[str]:
    """The action classes held: the form's, plus those over their guardrail budget when nobody saw them
    (auto mode, or ``--approve`` on the command line); a form shows them pre-filled instead."""
    holds = set(approval.hold_actions)
    if approval.by in ("auto", "cli"):
        holds |= set(over_budget)
    return holds


def second_round(
    approval: Approval, *, mode: str, wait_for_held: bool, held_rows: int, over_budget: Sequence[str]
) -> bool:
    """Whether to pause for a second approval of the rows held over their guardrail budget: in auto mode
    (not approved on the command line), when asked to wait, and when classes over budget held rows."""
    return bool(held_rows and mode == "auto" and approval.by == "auto" and wait_for_held and over_budget)


def held_by(held: Sequence[PlanRow]) -> dict[str, list[str]]:
    """The report's list of held rows (at most 50): ``{"form or guardrails": ["retire a@x", ...]}``."""
    return {"form or guardrails": sorted(f"{r.action} {r.key}" for r in held)[:50]} if held else {}


@dataclass(frozen=True)
class Conclusion:
    """How a sync run ended, for the flow's report artifact, run record and :class:`~scimflow.apply.SyncResult`."""

    status: SyncStatus
    report: ApplyReport | None = None
    run_id: str | None = None
    #: Who approved (:func:`approver_label`); ``None`` when the run ended before an approval was asked for.
    approver: str | None = None
    #: The approval's comment, if an approval was given.
    comment: str | None = None
    held_by: dict[str, list[str]] = field(default_factory=dict)
