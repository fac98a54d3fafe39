"""Plan rows and their outcomes: one line of ``plan.jsonl``, reading the approved plan back, holding rows.

Partner ids (the target's user id: a SuperOffice AssociateId, a SCIM ``id``) are opaque to the apply stage:
:attr:`PlanRow.associate_id` keeps what the plan file holds (SuperOffice plans write an integer, as the
contract says; SCIM plans a string) and :attr:`PlanRow.partner_id` gives it as a string, the form
:class:`RowResult`, the journal and the links carry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scimflow.errors import ScimflowError
from scimflow.vocab import CHANGE_ACTIONS

__all__ = [
    "CHANGE_ACTIONS",
    "Outcome",
    "PlanChangedError",
    "PlanRow",
    "RowResult",
    "outcome_counts",
    "partner_id",
    "plan_file_hash",
    "read_plan",
    "split_held",
]


Outcome = Literal["applied", "already_done", "held", "drifted", "failed"]


class PlanChangedError(ScimflowError, RuntimeError):
    """``plan.jsonl`` on disk is not the plan that was approved (its hash differs): nothing is applied."""


def partner_id(value: object) -> str | None:
    """A partner id as the apply stage carries it: a string (``None`` and blanks stay ``None``)."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class PlanRow(BaseModel):
    """One line of ``plan.jsonl``."""

    model_config = ConfigDict(frozen=True)

    action: str
    key: str
    entra_id: str | None = None
    #: The target's user id as the plan file holds it (an integer for SuperOffice, a string for SCIM).
    associate_id: int | str | None = None
    rules: list[str] = Field(default_factory=list)
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reason: str | None = None

    @property
    def partner_id(self) -> str | None:
        """:attr:`associate_id` as a string (the form results, the journal and the links carry)."""
        return partner_id(self.associate_id)

    def to_values(self) -> dict[str, Any]:
        """``{field: to}`` of every change."""
        return {k: v.get("to") for k, v in self.changes.items()}

    def from_values(self) -> dict[str, Any]:
        """``{field: from}`` of every change."""
        return {k: v.get("from") for k, v in self.changes.items()}


class RowResult(BaseModel):
    """What happened to one plan row; ``associate_id`` is the partner id as a string (opaque)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    key: str
    action: str
    outcome: Outcome
    entra_id: str | None = None
    associate_id: str | None = None
    detail: str | None = None
    verified: bool | None = None

    @classmethod
    def of(cls, row: PlanRow, outcome: Outcome, detail: str | None = None, **update: Any) -> RowResult:
        """The result of ``row`` (its key, action, Entra id and partner id) with ``outcome``."""
        fields: dict[str, Any] = {
            "key": row.key,
            "action": row.action,
            "entra_id": row.entra_id,
            "associate_id": row.partner_id,
            "outcome": outcome,
            "detail": detail,
        }
        fields.update(update)
        return cls(**fields)


def outcome_counts(
    results: Iterable[RowResult], outcomes: Sequence[str] = ("applied", "already_done", "drifted", "failed")
) -> dict[str, int]:
    """``{outcome: how many results have it}`` for each of ``outcomes``, in that order."""
    counts = dict.fromkeys(outcomes, 0)
    for r in results:
        if r.outcome in counts:
            counts[r.outcome] += 1
    return counts


def plan_file_hash(out: Path) -> str:
    """The sha256 (hex) of ``out/plan.jsonl``'s bytes."""
    return hashlib.sha256((Path(out) / "plan.jsonl").read_bytes()).hexdigest()


def read_plan(out: Path, plan_hash: str) -> list[PlanRow]:
    """The rows of ``out/plan.jsonl``, after checking the file is exactly the approved plan."""
    data = (Path(out) / "plan.jsonl").read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != plan_hash:
        msg = f"{out}/plan.jsonl changed since it was approved (hash {actual[:12]}…, approved {plan_hash[:12]}…)"
        raise PlanChangedError(msg)
    return [PlanRow.model_validate_json(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def split_held(
    rows: Sequence[PlanRow], hold_actions: Iterable[str] = (), hold_users: Iterable[str] = ()
) -> tuple[list[PlanRow], list[PlanRow]]:
    """Split the change rows into (to apply, held); quarantine and conflict rows are in neither."""
    actions = {a.strip().lower() for a in hold_actions}
    users = {u.strip().lower() for u in hold_users}
    go: list[PlanRow] = []
    held: list[PlanRow] = []
    for row in rows:
        if row.action not in CHANGE_ACTIONS:
            continue
        (held if row.action in actions or row.key in users else go).append(row)
    return go, held
