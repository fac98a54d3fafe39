"""The outcome of an apply and of a sync run: :class:`ApplyReport` (per-row results and counts),
:class:`SyncResult` (how a run ended, its exit code and run status), :func:`status_of`, and the run's final
state for an orchestrator (:func:`final_state_of`, :class:`SyncFailed`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import polars as pl
from pydantic import BaseModel, Field

from scimflow.apply._rows import CHANGE_ACTIONS, RowResult, outcome_counts

__all__ = [
    "PARTIAL_STATE_NAMES",
    "ApplyReport",
    "FinalState",
    "SyncFailed",
    "SyncResult",
    "SyncStatus",
    "final_state_of",
    "status_of",
]


class ApplyReport(BaseModel):
    """The result of applying a plan: counts and one :class:`RowResult` per change row."""

    plan_hash: str
    planned: int = Field(description="Change rows in the plan (create, update, retire, reactivate)")
    applied: int = 0
    already_done: int = 0
    held: int = 0
    drifted: int = 0
    failed: int = 0
    verified: int = 0
    unverified: int = Field(0, description="Applied rows whose read-back differs from the plan's `to`")
    rows: list[RowResult] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every planned change is in the target (applied now or before)."""
        return self.applied + self.already_done == self.planned

    def outcomes(self) -> pl.DataFrame:
        """Per-row outcomes as a frame (key, action, outcome, entra_id, associate_id, detail, verified)."""
        schema = {
            "key": pl.String,
            "action": pl.String,
            "outcome": pl.String,
            "entra_id": pl.String,
            "associate_id": pl.String,
            "detail": pl.String,
            "verified": pl.Boolean,
        }
        return pl.DataFrame([r.model_dump() for r in self.rows], schema=schema)

    @classmethod
    def from_results(cls, plan_hash: str, results: Iterable[RowResult], *, planned: int) -> ApplyReport:
        rows = sorted(results, key=lambda r: (r.key, r.action))
        counts = outcome_counts(rows, ("applied", "already_done", "held", "drifted", "failed"))
        return cls(
            plan_hash=plan_hash,
            planned=planned,
            verified=sum(1 for r in rows if r.verified is True),
            unverified=sum(1 for r in rows if r.verified is False),
            rows=rows,
            **counts,
        )


SyncStatus = Literal[
    "preview",
    "nothing_to_do",
    "applied",
    "partial",
    "rejected",
    "timed_out",
    "source_unhealthy",
    "failed",
    "plan_changed",
]
_EXIT: dict[str, int] = {
    "nothing_to_do": 0,
    "applied": 0,
    "partial": 3,
    "rejected": 3,
    "timed_out": 3,
    "source_unhealthy": 1,
    "failed": 1,
    "plan_changed": 1,
}
_RUN_STATUS: dict[str, str] = {
    "applied": "completed",
    "nothing_to_do": "completed",
    "partial": "partial",
    "rejected": "rejected",
    "timed_out": "rejected",
    "source_unhealthy": "source_unhealthy",
    "failed": "failed",
    "plan_changed": "failed",
    "preview": "completed",
}


class SyncResult(BaseModel):
    """How a sync run ended; ``exit_code`` follows the ``scimflow sync`` contract (0 / 3 / 1)."""

    status: SyncStatus
    plan_hash: str
    plan_dir: str
    counts: dict[str, int] = Field(default_factory=dict)
    guardrails: dict[str, Any] = Field(default_factory=dict)
    report: ApplyReport | None = None
    approver: str | None = None
    comment: str | None = None
    flow_run_id: str | None = None
    artifacts: dict[str, str] = Field(default_factory=dict)
    message: str = ""

    @property
    def change_rows(self) -> int:
        return sum(int(self.counts.get(a, 0)) for a in CHANGE_ACTIONS)

    @property
    def exit_code(self) -> int:
        """0 all applied or nothing to do; 3 some planned changes not applied; 1 error or unhealthy source."""
        if self.status == "preview":
            return 0 if self.change_rows == 0 else 3
        return _EXIT[self.status]

    @property
    def run_status(self) -> str:
        """The state store's run status for this outcome."""
        return _RUN_STATUS[self.status]


def status_of(report: ApplyReport) -> SyncStatus:
    """``failed`` when a write failed, ``nothing_to_do``/``applied`` when everything is in, else ``partial``."""
    if report.failed:
        return "failed"
    if report.planned == 0:
        return "nothing_to_do"
    return "applied" if report.complete else "partial"


#: The final state's name per exit-3 status (the run's state type stays *completed*: nothing went wrong, but
#: some planned changes were not applied). Distinct names show in the runs list and are the event names
#: (``prefect.flow-run.<name>``) an automation triggers on.
_PARTIAL_NAMES: dict[str, str] = {
    "partial": "Partial",
    "rejected": "Rejected",
    "timed_out": "ApprovalTimedOut",
    "preview": "Preview",
}
#: Every state name an exit-3 run ends with.
PARTIAL_STATE_NAMES: frozenset[str] = frozenset(_PARTIAL_NAMES.values())


class FinalState(NamedTuple):
    """The state a sync run ends in: ``kind`` (``completed`` or ``failed``), its display ``name`` and a
    one-line ``message`` saying what happened (counts, reasons; never a secret)."""

    kind: Literal["completed", "failed"]
    name: str
    message: str


def _report_counts(report: ApplyReport) -> str:
    parts = [f"applied {report.applied + report.already_done} of {report.planned}"]
    parts += [f"{what} {n}" for what, n in (("held", report.held), ("drifted", report.drifted)) if n]
    if report.failed:
        parts.append(f"failed {report.failed}")
    return ", ".join(parts)


def _message(result: SyncResult) -> str:
    """What happened, in one line (at most 500 characters)."""
    r = result.report
    by = f" by {result.approver}" if result.approver else ""
    why = f": {result.comment}" if result.comment else ""
    text: str
    if result.status == "source_unhealthy":
        reasons = "; ".join(str(x) for x in result.guardrails.get("reasons") or []) or "guardrails"
        text = f"source unhealthy, nothing applied: {reasons}"
    elif result.status == "plan_changed":
        text = f"plan files changed after approval (plan {result.plan_hash[:12]}), nothing applied"
    elif result.status == "failed":
        text = f"writes failed: {_report_counts(r)}" if r is not None else "writes failed"
    elif result.status == "rejected":
        text = f"plan {result.plan_hash[:12]} rejected{by}{why}; nothing applied"
    elif result.status == "timed_out":
        text = f"no approval of plan {result.plan_hash[:12]} in time; nothing applied"
    elif result.status == "preview":
        text = f"preview of plan {result.plan_hash[:12]}: {result.change_rows} changes, none applied"
    elif result.status == "partial":
        held = ", ".join(result.guardrails.get("held") or [])
        text = (f"{_report_counts(r)}" if r is not None else "some changes not applied") + (
            f" (over budget: {held})" if held else ""
        )
    elif result.status == "nothing_to_do":
        text = "nothing to do"
    else:
        text = _report_counts(r) if r is not None else result.status
    return text[:500]


def final_state_of(result: SyncResult) -> FinalState:
    """The run's final state: *failed* for exit 1 (error, unhealthy source, failed writes, changed plan),
    *completed* under a name of its own for exit 3 (``Partial``, ``Rejected``, ``ApprovalTimedOut``,
    ``Preview``), plain ``Completed`` for exit 0."""
    message = _message(result)
    code = result.exit_code
    if code == 1:
        return FinalState("failed", "Failed", message)
    if code == 3:
        return FinalState("completed", _PARTIAL_NAMES[result.status], message)
    return FinalState("completed", "Completed", message)


class SyncFailed(Exception):  # noqa: N818 - named for the run's state, as Prefect's own FailedRun
    """A sync run that ended failed (exit 1), carrying its :class:`SyncResult` (``.result``)."""

    def __init__(self, result: SyncResult) -> None:
        super().__init__(result)
        self.result = result

    def __str__(self) -> str:
        return f"sync {self.result.status}: {_message(self.result)}"
