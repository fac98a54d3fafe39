"""The sync run's decisions around approval, as plain functions (the flow only wires them).

- who approved a plan: known from *how* the approval was obtained (:data:`ApprovedBy`) and, for the form,
  the name the approver entered, recorded as unverified (:func:`approver_label`);
- whether a form's answer may be acted on at all (:func:`check_form`): it must carry the hash of the plan
  it approves and a name, and every hold must name a change class or a user key of the plan; anything
  else is refused with a message and nothing is applied (fail closed, never ignored);
- which action classes are held: the form's, plus the classes over their guardrail budget unless the form
  explicitly releases them (``release_held``), or all of them when nobody saw the plan (auto mode, or
  ``--approve``) (:func:`held_classes_for`);
- whether a second approval round runs for the held classes (:func:`second_round`);
- how the run ended (:class:`Conclusion`), handed to the flow's reporting as one typed object.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from scimflow.vocab import CHANGE_ACTIONS

if TYPE_CHECKING:
    from scimflow.apply._outcome import ApplyReport, SyncStatus
    from scimflow.apply._rows import PlanRow

__all__ = [
    "APPROVER_MAX",
    "MAX_REFUSALS",
    "Approval",
    "ApprovedBy",
    "ChangeClass",
    "Conclusion",
    "FormCheck",
    "FormReply",
    "approver_label",
    "automatic_approval",
    "check_form",
    "held_by",
    "held_classes_for",
    "second_round",
]

#: How an approval was obtained: the command line (``--approve``), auto mode within the guardrails, the
#: approval form (Prefect UI or API), or nobody (the form timed out, which rejects).
ApprovedBy = Literal["cli", "auto", "form", "timeout"]

#: The change classes a form may hold or release (the same names as :data:`scimflow.vocab.CHANGE_ACTIONS`;
#: a ``Literal`` so the Prefect UI's form offers them as choices and its server refuses anything else).
ChangeClass = Literal["create", "update", "retire", "reactivate"]

#: How many refused answers a paused run asks again for before it ends rejected.
MAX_REFUSALS = 3
#: The longest approver name recorded (the approvals table's column is 255 characters).
APPROVER_MAX = 200


@dataclass(frozen=True)
class Approval:
    """One approval decision: the form's fields, how it was given and by whom (as entered or known)."""

    approve: bool
    by: ApprovedBy
    comment: str = ""
    hold_actions: tuple[str, ...] = ()
    hold_users: tuple[str, ...] = ()
    #: Classes over their guardrail budget that the approver deliberately lets through.
    release_held: tuple[str, ...] = ()
    #: Who: the OS user for ``cli``, the name entered in the form for ``form`` (unverified).
    approver: str = ""
    #: The plan hash the answer carried (the form's; empty for the automatic approvals).
    plan_hash: str = ""

    def form_values(self) -> dict[str, object]:
        """The form's values as the state store records them."""
        return {
            "approve": self.approve,
            "comment": self.comment,
            "hold_actions": list(self.hold_actions),
            "hold_users": list(self.hold_users),
            "release_held": list(self.release_held),
            "plan_hash": self.plan_hash,
        }


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "unknown OS user"


def automatic_approval(mode: str, *, cli_approved: bool, os_user: str | None = None) -> Approval | None:
    """The approval given without the form (the command line's, or auto mode's); ``None``: ask the form.

    The command line's approval is the OS user who ran it (``os_user``, default :func:`getpass.getuser`).
    """
    if cli_approved:
        who = os_user if os_user is not None else _os_user()
        return Approval(approve=True, by="cli", comment="approved on the command line", approver=who)
    if mode == "auto":
        return Approval(approve=True, by="auto", comment="auto: within the guardrails")
    return None


def approved_in_advance(mode: str, *, cli_approved: bool) -> bool:
    """Whether a run, if it plans changes, applies them with no person to wait for: the approval of the
    command line or of auto mode (:func:`automatic_approval`); a preview never applies.

    Such a run holds the tenant's apply slot from its start (``flows/tenant_slot.py``): its plan is made
    against a target no other run of the tenant is writing to, and the wait for the slot overlaps its reads.
    """
    return mode != "preview" and (cli_approved or mode == "auto")


def applies_unattended(mode: str, *, cli_approved: bool, change_rows: int, verdict: str) -> bool:
    """Whether a planned run goes on to apply with no person to wait for: :func:`approved_in_advance`, with
    changes to make and a source healthy enough to plan from. A run that does not gives its slot back."""
    if change_rows == 0 or verdict == "source_unhealthy":
        return False
    return approved_in_advance(mode, cli_approved=cli_approved)


def approver_label(approval: Approval | None) -> str:
    """The approver as recorded and reported.

    ``kari (cli)`` for ``--approve`` (the OS user), ``auto (within the guardrails)``, ``timeout``, or the
    form's ``kari@contoso.com (unverified, entered in the form)``: the open-source Prefect server has no
    users, so the name typed in the form is all it can tell (see ``flows/sync.py``).
    """
    if approval is None or approval.by == "timeout":
        return "timeout"
    if approval.by == "auto":
        return "auto (within the guardrails)"
    name = " ".join(approval.approver.split())[:APPROVER_MAX] or "(no name given)"
    if approval.by == "cli":
        return f"{name} (cli)"
    return f"{name} (unverified, entered in the form)"


@dataclass(frozen=True)
class FormReply:
    """The approval form's answer as the resume carried it; ``plan_hash`` is ``None`` when it was not sent."""

    approve: bool
    approver: str = ""
    plan_hash: str | None = None
    comment: str = ""
    hold_actions: Sequence[str] = ()
    release_held: Sequence[str] = ()
    hold_users: Sequence[str] = ()


@dataclass(frozen=True)
class FormCheck:
    """A checked form answer: the :class:`Approval` it gives, or the errors it was refused for."""

    approval: Approval
    errors: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """Whether the answer is refused (nothing may be applied on it)."""
        return bool(self.errors)


def _classes(field_name: str, values: Sequence[str], errors: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        name = str(value).strip().lower()
        if name in CHANGE_ACTIONS:
            out.append(name)
        else:
            choices = ", ".join(CHANGE_ACTIONS)
            errors.append(f"{field_name}: {str(value)!r} is not a change class (choose from {choices})")
    return tuple(dict.fromkeys(out))


def check_form(reply: FormReply, *, plan_hash: str, plan_keys: Iterable[str]) -> FormCheck:
    """Check a form's answer against the plan it was asked for; refuse it (nothing applied) on any error.

    An approval must carry ``plan_hash`` equal to the planned hash (a stale or forged answer approves
    nothing), a non-empty ``approver``, change classes only in ``hold_actions`` / ``release_held`` (no class
    in both), and only user keys of the plan's change rows in ``hold_users`` (trimmed, case-insensitive;
    recorded as the plan spells them). A rejection (``approve`` false) is never refused: it applies nothing.
    """
    errors: list[str] = []
    holds = _classes("hold_actions", reply.hold_actions, errors)
    release = _classes("release_held", reply.release_held, errors)
    both = sorted(set(holds) & set(release))
    if both:
        errors.append(f"hold_actions and release_held both name {', '.join(both)}: choose one")
    keys = {k.strip().lower(): k for k in plan_keys}
    users: list[str] = []
    for value in reply.hold_users:
        key = keys.get(str(value).strip().lower())
        if key is None:
            errors.append(
                f"hold_users: {str(value)!r} is not a user key of this plan (give the UPN as the preview shows it)"
            )
        else:
            users.append(key)
    if reply.plan_hash is None or not reply.plan_hash.strip():
        errors.append(f"plan_hash is missing: an approval must carry the hash of the plan it approves ({plan_hash})")
    elif reply.plan_hash.strip().lower() != plan_hash.lower():
        errors.append(f"plan_hash {reply.plan_hash.strip()[:64]!r} is not this run's plan {plan_hash}")
    approver = " ".join(reply.approver.split())[:APPROVER_MAX]
    if not approver:
        errors.append("approver is empty: enter your name or e-mail address")
    approval = Approval(
        approve=reply.approve,
        by="form",
        comment=reply.comment,
        hold_actions=holds,
        hold_users=tuple(dict.fromkeys(users)),
        release_held=release,
        approver=approver,
        plan_hash=(reply.plan_hash or "").strip()[:64],
    )
    if not reply.approve:
        return FormCheck(approval)
    return FormCheck(approval, tuple(errors))


def held_classes_for(approval: Approval, over_budget: Iterable[str]) -> set[str]:
    """The action classes held: the form's, plus those over their guardrail budget unless the form lists
    them in ``release_held`` (an empty or omitted ``hold_actions`` releases nothing); auto mode and
    ``--approve`` on the command line (nobody saw the plan) hold every class over budget."""
    holds = set(approval.hold_actions)
    over = set(over_budget)
    if approval.by in ("auto", "cli"):
        return holds | over
    return holds | (over - set(approval.release_held))


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
