"""Apply tasks: one task run per chunk of changes (never per user), plus the bookkeeping around them.

The chunk task has no Prefect ``retries``: the connector already retries each request (one retry layer),
and a chunk that fails is safe to run again later because the journal and idempotent creates make the
apply resumable.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from scimflow import apply, pipeline
from scimflow.apply import ApplyReport, PlanRow, RowResult
from scimflow.config import Config

if TYPE_CHECKING:
    from scimflow.frames import Reference

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


@dataclass
class _ApplySession:
    """What the chunks of one apply share in this process: one logged-in target, its reference, the write slots."""

    target: Any  # a SuperOfficeTarget
    ref: Reference
    writers: apply.WritePool
    turns: apply.ChunkTurns
    resources: ExitStack  # closes the writers, then the target, and ends the frozen heap


_sessions: dict[tuple[str | None, str, str], _ApplySession] = {}
_sessions_lock = threading.Lock()


def _session(config: Config, plan_hash: str, run_id: str | None) -> _ApplySession:
    """The apply session of this run and plan, built (login, reference read) by its first chunk.

    The target is built here, inside the task process, from the config (never passed to a task); the
    reference is read once per run, not once per chunk, and one pool of ``write_concurrency`` writers serves
    the chunks that run side by side.
    """
    key = (run_id, plan_hash, config.superoffice.webapi_url)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            with ExitStack() as resources:
                target = resources.enter_context(apply.new_target(config))
                ref = target.read_reference()
                writers = resources.enter_context(apply.WritePool(config.superoffice.write_concurrency))
                resources.enter_context(apply.frozen_heap())
                session = _ApplySession(target, ref, writers, apply.ChunkTurns(apply.LOOKAHEAD), resources.pop_all())
            _sessions[key] = session
        return session


def release_apply_session(config: Config, plan_hash: str, run_id: str | None) -> None:
    """Close the apply session of this run and plan, if this process has one (after its last chunk)."""
    with _sessions_lock:
        session = _sessions.pop((run_id, plan_hash, config.superoffice.webapi_url), None)
    if session is not None:
        session.resources.close()


@task(name="apply-changes", task_run_name="apply-changes-{index}-of-{total}", cache_policy=NO_CACHE)
def apply_changes(
    config: Config, plan_hash: str, rows: list[PlanRow], *, index: int, total: int, run_id: str | None
) -> list[RowResult]:
    """Apply one chunk of changes (drift re-check, bounded concurrent writes, journal).

    Every chunk's task is submitted at once; it waits for its turn (:class:`~scimflow.apply.ChunkTurns`:
    at most :data:`~scimflow.apply.LOOKAHEAD` chunks past the oldest unfinished one), so its re-read
    stays close to its writes and the next chunk starts the moment an earlier one ends.
    """
    logger = get_run_logger()
    session = _session(config, plan_hash, run_id)
    with session.turns.turn(index), pipeline.open_store(config) as store:
        results = apply.apply_chunk(
            config,
            store,
            plan_hash,
            rows,
            target=session.target,
            ref=session.ref,
            writers=session.writers,
            run_id=run_id,
            rank=index,
        )
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
            config,
            store,
            plan_hash,
            rows,
            results,
            matched_pairs=matched_pairs,
            entra_frame=entra.frame if entra is not None else None,
            entra_links=entra.links if entra is not None else None,
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
