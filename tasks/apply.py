"""Apply tasks: one task run per chunk of changes (never per user), plus the bookkeeping around them.

The chunk task has no Prefect ``retries``: the connector already retries each request (one retry layer),
and a chunk that fails is safe to run again later because the journal and idempotent creates make the
apply resumable.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from scimflow import apply, pipeline
from scimflow.apply import ApplyReport, PlanRow, RowResult
from scimflow.config import Config

__all__ = [
    "apply_changes",
    "finish_changes",
    "finish_sync_run",
    "hold_changes",
    "load_approved_plan",
    "record_approval_form",
    "release_apply_session",
]


@task(name="load-approved-plan", cache_policy=NO_CACHE)
def load_approved_plan(out: Path, plan_hash: str) -> list[PlanRow]:
    """Read plan.jsonl back, refusing it unless its hash is the approved one."""
    return apply.read_plan(out, plan_hash)


_sessions: dict[tuple[str | None, str], apply.ApplySession] = {}
_sessions_lock = threading.Lock()


def _session(config: Config, plan_hash: str, run_id: str | None) -> apply.ApplySession:
    """The apply session of this run and plan in this process, built by its first chunk.

    The writer is built here, inside the task process, from the config (never passed to a task); one
    :class:`~scimflow.apply.ApplySession` (the writer, its ``concurrency`` writer threads, the chunks' turns)
    serves every chunk task of the run. This is why the flow pins the in-process thread task runner.
    """
    key = (run_id, plan_hash)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = apply.ApplySession(apply.new_writer(config), own_writer=True)
            _sessions[key] = session
        return session


def release_apply_session(plan_hash: str, run_id: str | None) -> None:
    """Close the apply session of this run and plan, if this process has one (after its last chunk)."""
    with _sessions_lock:
        session = _sessions.pop((run_id, plan_hash), None)
    if session is not None:
        session.close()


@task(name="apply-changes", task_run_name="apply-changes-{index}-of-{total}", cache_policy=NO_CACHE)
def apply_changes(
    config: Config, plan_hash: str, rows: list[PlanRow], *, index: int, total: int, run_id: str | None
) -> list[RowResult]:
    """Apply one chunk of changes (drift re-check, bounded concurrent writes, journal).

    Every chunk's task is submitted at once; it waits for its turn
    (:meth:`~scimflow.apply.ApplySession.run_chunk`: at most :data:`~scimflow.apply.LOOKAHEAD` chunks past
    the oldest unfinished one), so its re-read stays close to its writes and the next chunk starts the
    moment an earlier one ends.
    """
    logger = get_run_logger()
    session = _session(config, plan_hash, run_id)
    with pipeline.open_store(config) as store:
        results = session.run_chunk(store, plan_hash, rows, index, run_id=run_id)
    by = apply.outcome_counts(results)
    logger.info("chunk %d/%d: %d rows: %s", index, total, len(rows), ", ".join(f"{k} {v}" for k, v in by.items()))
    for r in results:
        if r.outcome in ("drifted", "failed"):
            logger.warning("%s %s: %s (%s)", r.action, r.key, r.outcome, r.detail)
    return results


@task(name="hold-changes", cache_policy=NO_CACHE)
def hold_changes(config: Config, plan_hash: str, rows: list[PlanRow], why: str, run_id: str | None) -> list[RowResult]:
    """Journal rows that are not applied (held by the form or over a guardrail budget)."""
    if not rows:
        return []
    with pipeline.open_store(config) as store:
        results = apply.hold_rows(store, plan_hash, rows, why=why, run_id=run_id)
    get_run_logger().info("%d changes held (%s)", len(results), why)
    return results


@task(name="finish-changes", cache_policy=NO_CACHE)
def finish_changes(
    config: Config,
    plan_hash: str,
    rows: list[PlanRow],
    results: list[RowResult],
    matched_pairs: pl.DataFrame,
    entra: pipeline.EntraExtract | None,
) -> ApplyReport:
    """Verify the writes, store the links and (when nothing failed) the Entra baseline; return the report."""
    with pipeline.open_store(config) as store:
        report = apply.finish_apply(
            store,
            plan_hash,
            rows,
            results,
            writer=lambda: apply.new_writer(config),
            matched_pairs=matched_pairs,
            baseline=apply.entra_baseline(
                config, store, entra.frame if entra is not None else None, entra.links if entra is not None else None
            ),
        )
    get_run_logger().info(
        "applied %d, already done %d, held %d, drifted %d, failed %d, verified %d of %d",
        report.applied,
        report.already_done,
        report.held,
        report.drifted,
        report.failed,
        report.verified,
        report.planned,
    )
    return report


@task(name="record-approval", cache_policy=NO_CACHE)
def record_approval_form(
    config: Config, run_id: str | None, plan_hash: str, approver: str, form: dict[str, Any]
) -> None:
    """Journal who approved (or rejected) which plan hash, with the form's values."""
    with pipeline.open_store(config) as store:
        store.record_approval(run_id, plan_hash, approver, form)


@task(name="finish-sync-run", cache_policy=NO_CACHE)
def finish_sync_run(
    config: Config, run_id: str | None, status: str, summary: dict[str, Any], source_users: int | None
) -> None:
    """Record how the run ended (its source count is the next run's ``max_source_drop`` base if successful)."""
    if run_id is None:
        return
    with pipeline.open_store(config) as store:
        store.finish_run(run_id, status, summary, source_users)
