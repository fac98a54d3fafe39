"""The runs part of the state store: each run's mode, status, plan hash and source count."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StateError, StoreBase, aware, utc_now

__all__ = ["RUN_STATUSES", "SUCCESSFUL_RUN_STATUSES", "RunStatus", "RunsPart"]

RunStatus = Literal["running", "completed", "partial", "rejected", "failed", "source_unhealthy", "crashed"]

#: Every status a run may be finished with (``running`` is set by :meth:`StateStore.start_run`; ``crashed``
#: by :func:`scimflow.state.mark_crashed_runs` for a run whose process died).
RUN_STATUSES: tuple[str, ...] = (
    "running",
    "completed",
    "partial",
    "rejected",
    "failed",
    "source_unhealthy",
    "crashed",
)
#: Runs whose source count is a trustworthy base for the ``max_source_drop`` guardrail: the source was
#: judged healthy and the run went to its end (everything applied, or some of it held or drifted).
SUCCESSFUL_RUN_STATUSES: tuple[str, ...] = ("completed", "partial")


class RunsPart(StoreBase):
    """Runs: start one, finish it, read it back, and the source count of the newest successful one."""

    def start_run(
        self,
        mode: str,
        *,
        plan_hash: str | None = None,
        source_users: int | None = None,
        flow_run_id: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record a run as ``running``; return its id (a new UUID unless ``run_id`` is given)."""
        rid = run_id or str(uuid.uuid4())
        with self._tx() as conn:
            conn.execute(
                sa.insert(t.runs).values(
                    id=rid,
                    started_at=utc_now(),
                    mode=mode,
                    status="running",
                    plan_hash=plan_hash,
                    source_users=source_users,
                    flow_run_id=flow_run_id,
                )
            )
        return rid

    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        summary: Mapping[str, Any] | None = None,
        source_users: int | None = None,
        *,
        plan_hash: str | None = None,
    ) -> None:
        """Mark a run finished with ``status`` (one of :data:`RUN_STATUSES`) and its summary.

        ``source_users`` (the Entra users extracted) of a successful run is the base of the next run's
        ``max_source_drop`` guardrail. ``None`` keeps what :meth:`start_run` recorded.
        """
        if status not in RUN_STATUSES:
            msg = f"finish_run: status {status!r} is not one of {', '.join(RUN_STATUSES)}"
            raise StateError(msg)
        values: dict[str, Any] = {"status": status, "finished_at": utc_now()}
        if summary is not None:
            values["summary"] = dict(summary)
        if source_users is not None:
            values["source_users"] = source_users
        if plan_hash is not None:
            values["plan_hash"] = plan_hash
        with self._tx() as conn:
            result = conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(**values))
            if result.rowcount == 0:
                msg = f"finish_run: no run {run_id!r}"
                raise StateError(msg)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row as a dict, or ``None``."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id)).mappings().one_or_none()
        if row is None:
            return None
        out = dict(row)
        out["started_at"] = aware(out["started_at"])
        out["finished_at"] = aware(out["finished_at"])
        return out

    def last_successful_source_count(self) -> int | None:
        """The Entra user count of the newest successful run (see :data:`SUCCESSFUL_RUN_STATUSES`)."""
        r = t.runs
        with self._tx() as conn:
            return conn.execute(
                sa.select(r.c.source_users)
                .where(r.c.status.in_(SUCCESSFUL_RUN_STATUSES), r.c.source_users.is_not(None))
                .order_by(r.c.finished_at.desc(), r.c.started_at.desc())
                .limit(1)
            ).scalar_one_or_none()
