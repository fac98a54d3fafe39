"""The outcome of an apply and of a sync run: :class:`ApplyReport` (per-row results and counts),
:class:`SyncResult` (how a run ended, its exit code and run status) and :func:`status_of`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, Field

from scimflow.apply._rows import CHANGE_ACTIONS, RowResult, outcome_counts

__all__ = ["ApplyReport", "SyncResult", "SyncStatus", "status_of"]


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
