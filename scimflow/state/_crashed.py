"""Runs whose process died: left ``running`` in the runs table (``finish_run`` never came), marked
``crashed`` when the next run starts, if the caller's liveness check says their process is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StoreBase, aware, utc_now

__all__ = ["mark_crashed_runs", "running_runs"]


def running_runs(store: StoreBase) -> list[dict[str, Any]]:
    """Every run still marked ``running`` (oldest first): id, started_at, mode, plan_hash, flow_run_id."""
    r = t.runs
    with store._tx() as conn:  # a part of the store, in its own module
        rows = conn.execute(
            sa.select(r.c.id, r.c.started_at, r.c.mode, r.c.plan_hash, r.c.flow_run_id)
            .where(r.c.status == "running")
            .order_by(r.c.started_at)
        ).mappings()
        out = [dict(row) for row in rows]
    for row in out:
        row["started_at"] = aware(row["started_at"])
    return out


def mark_crashed_runs(store: StoreBase, is_alive: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Mark ``crashed`` every ``running`` run for which ``is_alive(row)`` is false; return their ids.

    ``is_alive`` decides from the row (its ``flow_run_id`` above all): a run paused for approval is alive;
    a run whose process was killed is not. Only rows still ``running`` when marked are changed, so a run
    finishing meanwhile keeps its own status.
    """
    marked: list[str] = []
    for row in running_runs(store):
        if is_alive(row):
            continue
        with store._tx() as conn:
            done = conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.id == row["id"], t.runs.c.status == "running")
                .values(
                    status="crashed",
                    finished_at=utc_now(),
                    summary={"status": "crashed", "why": "its process ended without finishing the run"},
                )
            )
        if done.rowcount:
            marked.append(str(row["id"]))
    return marked
