"""The inverse of one applied plan row, and the check of that row against the target as it is today.

Pure functions: no I/O. :func:`inverse_of` says what undoing a row means (the inverse action and changes,
the values the run left the user with, the values it had before); :func:`judge` compares the user's current
record with those (through the target writer's own ``differences``, the comparison the apply engine uses)
and returns either the inverse plan row, a held row (``conflict``: drifted or gone), or nothing (the user is
already back where the run found it).

What undoing means, per action (ARCHITECTURE.md "Plan files"; docs/operations.md "Undo a run"):

- ``update`` → ``update`` with every ``from``/``to`` swapped.
- ``create`` → ``retire`` (``active`` true → false): a user is never deleted. On SuperOffice, MakeRetired
  also removes the licences; on a SCIM target the user is deactivated and keeps its computed-group
  memberships (the SCIM contract's retire).
- ``retire`` (``deprovision: retire``, ``active`` true → false) → ``reactivate`` (``active`` false → true,
  any other change of the row swapped). SuperOffice's retirement removed the licences; the retire row
  records only ``active``, but the apply journals the licences the user had just before it
  (:func:`scimflow.vocab.before_retirement`), and the reactivation gives them back (``before``).
- ``retire`` without ``active`` (``deprovision: remove_plan``: ``user_plan`` X → null) → ``update``
  restoring ``user_plan`` X.
- ``reactivate`` → ``retire`` (``active`` true → false) with the row's other changes swapped; on a SCIM
  target only ``active`` (the SCIM writer's retire sends ``active`` alone; the other values stay).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Differences", "Inverse", "Verdict", "inverse_of", "judge", "swap"]

#: ``writer.differences``: the fields of ``values`` whose value in ``current`` differs.
Differences = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


def swap(changes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{field: {"from": to, "to": from}}`` for every change."""
    return {f: {"from": c.get("to"), "to": c.get("from")} for f, c in changes.items()}


@dataclass(frozen=True)
class Inverse:
    """What undoing one applied row means.

    ``action``/``changes``: the inverse row. ``expect``: the values the run left the user with (the user must
    still have them, else it drifted). ``before``: the values it had before the run (the user already has
    them: nothing to undo). ``note``: a caveat for the row's reason (what the inverse cannot restore).
    """

    action: str
    changes: dict[str, dict[str, Any]]
    expect: dict[str, Any]
    before: dict[str, Any]
    note: str | None = None


def inverse_of(
    action: str,
    changes: Mapping[str, Mapping[str, Any]],
    *,
    target: str,
    before: Mapping[str, Any] | None = None,
) -> Inverse:
    """The inverse of a row of ``action`` with ``changes`` on ``target`` (``superoffice`` or ``scim``).

    ``before``: for a retirement, the values it cleared (the licences), as the apply stage journalled them
    (:func:`scimflow.vocab.before_retirement`); the reactivation gives them back.

    Raises ``ValueError`` for an action that is not a change (quarantine, conflict, group rows).
    """
    note: str | None = None
    to = {f: c.get("to") for f, c in changes.items()}
    frm = {f: c.get("from") for f, c in changes.items()}
    active = changes.get("active")
    if action == "update":
        return Inverse("update", swap(changes), to, frm)
    if action == "create":
        values = {f: v for f, v in to.items() if v is not None and f != "active"}
        note = (
            "a SCIM user is deactivated, never deleted; it keeps its computed-group memberships"
            if target == "scim"
            else "a SuperOffice user is retired, never deleted"
        )
        return Inverse(
            "retire", {"active": {"from": True, "to": False}}, {**values, "active": True}, {"active": False}, note
        )
    if action == "retire" and active is not None:
        back = swap(changes)
        for f, v in (before or {}).items():
            if f not in back:  # the licences the retirement removed, as they were just before it
                back[f] = {"from": False if isinstance(v, bool) else None, "to": v}
        if target != "scim" and not before:
            note = "the licences the retirement removed (user plan, confidential) are not restored: the journal does not hold them"
        return Inverse("reactivate", back, to, {**frm, **(before or {})}, note)
    if action == "retire":  # deprovision: remove_plan (user_plan X -> null), the login kept
        return Inverse("update", swap(changes), to, frm)
    if action == "reactivate":
        if target == "scim":
            others = sorted(f for f in changes if f != "active")
            note = f"left as they are: {', '.join(others)}" if others else None
            return Inverse("retire", {"active": {"from": True, "to": False}}, to, {"active": False}, note)
        return Inverse("retire", swap(changes), to, frm)
    msg = f"a {action} row is not a change: it has no inverse"
    raise ValueError(msg)


Kind = Literal["inverse", "drifted", "gone", "already_undone"]


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` decided for one applied row: ``kind`` and, for ``drifted``, the ``fields``."""

    kind: Kind
    fields: list[str] = field(default_factory=list)


def judge(inverse: Inverse, current: Mapping[str, Any] | None, differences: Differences) -> Verdict:
    """Compare the user's ``current`` record (``None``: gone) with what the run left and what was before.

    Still as the run left it → ``inverse``; already as before the run → ``already_undone``; anything else
    → ``drifted`` (the fields that differ from what the run wrote): held, never overwritten.
    """
    if current is None:
        return Verdict("gone")
    differs = differences(current, inverse.expect)
    if not differs:
        return Verdict("inverse")
    if not differences(current, inverse.before):
        return Verdict("already_undone")
    return Verdict("drifted", differs)
