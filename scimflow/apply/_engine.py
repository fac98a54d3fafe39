"""The apply engine: write approved plan rows through a :class:`~scimflow.apply.Writer`, safely and resumably.

It knows no target: a SuperOffice AssociateId and a SCIM ``id`` are both opaque strings here, and the
writer (see :mod:`scimflow.apply._writer`) holds the order of writes, the field comparison and the bulk
look-ups. What the engine guarantees:

- **No overwriting of concurrent edits.** Just before a chunk is written, its touched users are re-read in
  one bulk request (``writer.read_users``); a user whose current values are neither the plan's ``from``
  (then it is written) nor its ``to`` (then it is already done) has *drifted* and is held. A writer that
  can (SuperOffice's JSON Patch ``test`` ops) also refuses a change landing between the re-read and the
  write (``ConflictError`` → drifted).
- **Resumable.** Every row's outcome is journalled under ``(plan_hash, key, action)`` before and after the
  write; a rerun of the same plan skips what is ``applied``/``verified``, creates are idempotent in the
  writer, and a row found already at its ``to`` values counts as already done.
- **Journalled in batches, without losing crash safety.** Rows are journalled ``pending`` (one transaction
  per chunk) before any of them is written; outcomes are then journalled in batches of
  :data:`JOURNAL_BATCH` rows, and whatever is buffered is flushed when the chunk ends, normally or by an
  exception. Only a killed process can lose buffered marks, and a lost mark leaves its row ``pending``:
  the rerun re-checks that row instead of repeating it (an update is found at its ``to`` values, a create
  finds the user it made). So batching can cost a re-check, never a duplicate or a lost change.
- **Creates in bulk.** ``writer.prepare`` runs side by side with the re-read and learns which creates the
  journal has seen before (under any plan: a rerun after a crash plans again); only those may have left
  something behind, as ``pending`` precedes every write.
- **Read once, written once.** The chunk's bulk re-read is also what an update is written from (passed to
  ``writer.write``). Chunks running side by side share one writer and one :class:`WritePool` (oldest chunk
  first), so the next ones re-read while this one writes without exceeding ``writer.concurrency``.
- **Checked.** When a chunk's writes are done, its touched users are read back in one bulk request (while
  the next chunks write) and compared with the plan's ``to`` values.

:func:`scimflow.apply.apply_plan` runs a whole plan; the Prefect layer runs :func:`apply_chunk` once per
chunk (through :class:`scimflow.apply.ApplySession`) and :func:`finish_apply` once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from functools import partial
from typing import TYPE_CHECKING, Any

from scimflow.apply._outcome import ApplyReport
from scimflow.apply._pool import WritePool
from scimflow.apply._rows import CHANGE_ACTIONS, PlanRow, RowResult, outcome_counts
from scimflow.apply._writer import Writer as WriterProtocol
from scimflow.connectors.errors import ConflictError, ConnectorError
from scimflow.vocab import before_retirement

if TYPE_CHECKING:
    import polars as pl

    from scimflow.apply._writer import RowKey, Writer
    from scimflow.state import StateStore

__all__ = ["JOURNAL_BATCH", "apply_chunk", "finish_apply", "hold_rows", "verify"]

log = logging.getLogger(__name__)

#: Row outcomes are journalled in one transaction per this many rows (or per this many seconds).
JOURNAL_BATCH = 32
JOURNAL_BATCH_SECONDS = 0.25

_JOURNAL_STATUS = {
    "applied": "applied",
    "already_done": "applied",
    "held": "held",
    "drifted": "drifted",
    "failed": "failed",
}


# --- the journal ----------------------------------------------------------------------------------


def _started_creates(store: StateStore, rows: Sequence[PlanRow]) -> set[str]:
    """Keys of create rows the journal has seen before, under any plan.

    A create that was journalled before (``pending``, ``failed``, …) may have been interrupted between its
    writes, possibly under an earlier plan (a rerun after a crash plans again); only those rows look for
    what an earlier attempt left behind. Rows are journalled ``pending`` before any write, so a create the
    journal has never seen wrote nothing. Matched by key or by Entra id (a renamed user keeps its id).
    """
    creates = [r for r in rows if r.action == "create"]
    if not creates:
        return set()
    by_id = {r.entra_id: r.key for r in creates if r.entra_id}
    seen: set[str] = set()
    for key, entra_id in store.journal_seen("create", [r.key for r in creates], list(by_id)):
        seen.add(key)
        if entra_id in by_id:
            seen.add(by_id[entra_id])
    return seen


def _mark(store: StateStore, plan_hash: str, results: Iterable[RowResult]) -> None:
    store.journal_mark_many(
        plan_hash, [(r.key, r.action, _JOURNAL_STATUS[r.outcome], r.detail, r.associate_id) for r in results]
    )


def _journal_verified(store: StateStore, plan_hash: str, results: Iterable[RowResult]) -> None:
    """Journal the results whose read-back matched the plan as ``verified``."""
    verified = [(r.key, r.action, "verified", r.detail, r.associate_id) for r in results if r.verified]
    if verified:
        store.journal_mark_many(plan_hash, verified)


def _new_links(
    results: Iterable[RowResult], outcome: str, planned: Mapping[RowKey, str | None] | None = None
) -> list[tuple[str, str]]:
    """``(entra_id, partner id)`` of the results with ``outcome`` whose partner is new: the creates, and the
    rows written to another partner than ``planned`` (row → its plan's partner id), as when a writer found
    a cached id gone and re-matched the user."""
    planned = planned or {}
    return [
        (r.entra_id, r.associate_id)
        for r in results
        if r.outcome == outcome
        and r.entra_id
        and r.associate_id
        and (r.action == "create" or planned.get((r.key, r.action), r.associate_id) != r.associate_id)
    ]


def hold_rows(
    store: StateStore, plan_hash: str, rows: Iterable[PlanRow], *, why: str, run_id: str | None = None
) -> list[RowResult]:
    """Journal ``rows`` as ``held`` (by the form, or over a guardrail budget) and return their results."""
    rows = list(rows)
    store.journal_begin(plan_hash, [r.model_dump() for r in rows], run_id=run_id)
    results = [RowResult.of(r, "held", why) for r in rows]
    _mark(store, plan_hash, results)
    return results


class _JournalBuffer:
    """Row outcomes waiting to be journalled: flushed in one transaction per :data:`JOURNAL_BATCH` rows.

    Only the chunk's collecting thread uses it; :meth:`flush` also runs when the chunk ends (even by an
    exception), so only a killed process loses marks, and a lost mark re-checks a row, never repeats it.
    """

    def __init__(self, store: StateStore, plan_hash: str, planned: Mapping[RowKey, str | None]) -> None:
        self.store = store
        self.plan_hash = plan_hash
        self.planned = planned  # row -> its plan's partner id (a write may answer with another: link it)
        self.results: list[RowResult] = []
        self.since = 0.0

    def add(self, result: RowResult) -> None:
        if not self.results:
            self.since = time.monotonic()
        self.results.append(result)
        if len(self.results) >= JOURNAL_BATCH or time.monotonic() - self.since >= JOURNAL_BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.results:
            return
        batch, self.results = self.results, []
        _mark(self.store, self.plan_hash, batch)
        links = _new_links(batch, "applied", self.planned)
        if links:
            self.store.upsert_links(links)


# --- one chunk ------------------------------------------------------------------------------------


def _write_row(writer: Writer, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> RowResult:
    """Send one row through the writer; connector errors become a ``drifted``/``failed`` result."""
    try:
        new_id = writer.write(row, current, chunk)
    except ConflictError as exc:
        return RowResult.of(row, "drifted", f"changed in the target during the write: {exc}")
    except ConnectorError as exc:
        return RowResult.of(row, "failed", str(exc))
    kept = before_retirement(current) if row.action == "retire" and "active" in row.changes else None
    return RowResult.of(
        row,
        "applied",
        kept if isinstance(kept, str) else None,
        associate_id=new_id if new_id is not None else row.partner_id,
    )


def apply_chunk(
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    writer: Writer,
    *,
    writers: WritePool | None = None,
    run_id: str | None = None,
    on_result: Callable[[RowResult], None] | None = None,
    rank: int | None = None,
) -> list[RowResult]:
    """Apply one chunk of change rows: journal, re-read touched users, hold drift, write, journal, read back.

    ``writers`` is the pool shared by the chunks running side by side (a pool of ``writer.concurrency``
    threads is made for this chunk alone when omitted); ``rank`` orders this chunk's rows among them
    (lower first; by default, the order in which chunks reach their writes). Errors other than the
    connector's per-row errors propagate; the journal then still says ``pending`` for the rows in flight,
    and a rerun sorts them out.
    """
    if writers is None:
        with WritePool(writer.concurrency) as own:
            return _apply_chunk(store, plan_hash, rows, writer, own, run_id, on_result, rank)
    return _apply_chunk(store, plan_hash, rows, writer, writers, run_id, on_result, rank)


def _apply_chunk(
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    writer: Writer,
    writers: WritePool,
    run_id: str | None,
    on_result: Callable[[RowResult], None] | None,
    rank: int | None,
) -> list[RowResult]:
    started = _started_creates(store, rows)  # before journal_begin marks this chunk's rows pending
    store.journal_begin(plan_hash, [r.model_dump() for r in rows], run_id=run_id)
    done = store.journal_status(plan_hash)
    results: list[RowResult] = []
    todo: list[PlanRow] = []
    for row in rows:
        if done.get((row.key, row.action)) in ("applied", "verified"):
            results.append(RowResult.of(row, "already_done", "journalled as applied"))
        else:
            todo.append(row)

    # Re-read every touched user in one request, just before writing: drift is held, never overwritten.
    # The writer's bulk preparation (e.g. the creates' user names) runs side by side with the re-read.
    ids = sorted({pid for r in todo if r.action != "create" and (pid := r.partner_id) is not None})
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scimflow-reread") as pool:
        reread = pool.submit(partial(writer.read_users, ids, rows=todo)) if ids else None
        prepared = pool.submit(writer.prepare, todo, retried=started) if todo else None
        current = reread.result() if reread is not None else {}
        chunk = prepared.result() if prepared is not None else None
    writes: list[tuple[PlanRow, Mapping[str, Any] | None]] = []
    for row in todo:
        if row.action == "create":
            writes.append((row, None))
            continue
        now = current.get(row.partner_id) if row.partner_id is not None else None
        if now is None:
            results.append(RowResult.of(row, "drifted", "the user is gone from the target"))
        elif not writer.differences(now, row.to_values()):
            results.append(RowResult.of(row, "already_done", "already at the planned values"))
        elif not (fields := writer.differences(now, row.from_values())):
            writes.append((row, now))
        else:
            results.append(RowResult.of(row, "drifted", f"changed in the target since the plan: {', '.join(fields)}"))
    _mark(store, plan_hash, results)

    if writes:
        journal = _JournalBuffer(store, plan_hash, {(row.key, row.action): row.partner_id for row, _ in writes})
        if rank is None:
            rank = writers.new_chunk()
        futures = [writers.submit(rank, _write_row, writer, row, now, chunk) for row, now in writes]
        written: list[RowResult] = []
        try:
            for future in as_completed(futures):
                result = future.result()
                journal.add(result)
                if on_result is not None:
                    on_result(result)
                written.append(result)
        except BaseException:
            for future in futures:  # rows no writer has started are not sent
                future.cancel()
            wait(futures)  # nor is this chunk left while its rows are being written
            raise
        finally:
            journal.flush()
        results += _finish_chunk(store, plan_hash, writer, chunk, written)
    # Read back what this chunk wrote (one bulk read), while the next chunks write.
    results = verify(writer, rows, results)
    _journal_verified(store, plan_hash, results)
    counts = outcome_counts(results)
    log.info("chunk of %d rows: %s", len(rows), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return results


def _finish_chunk(
    store: StateStore, plan_hash: str, writer: Writer, chunk: Any, written: list[RowResult]
) -> list[RowResult]:
    """The writer's deferred work for the chunk; rows it reports failed are journalled ``failed``."""
    failed: Mapping[RowKey, str] = writer.finish_chunk(chunk)
    if not failed:
        return written
    out = [
        r.model_copy(update={"outcome": "failed", "detail": failed[(r.key, r.action)]})
        if (r.key, r.action) in failed
        else r
        for r in written
    ]
    _mark(store, plan_hash, [r for r in out if (r.key, r.action) in failed])
    return out


# --- after the chunks -----------------------------------------------------------------------------


def _to_verify(results: Iterable[RowResult]) -> set[tuple[str, str]]:
    """``(key, action)`` of the results written (now or before) and not read back yet."""
    return {
        (r.key, r.action)
        for r in results
        if r.outcome in ("applied", "already_done") and r.associate_id is not None and r.verified is None
    }


def verify(writer: Writer, rows: Sequence[PlanRow], results: Sequence[RowResult]) -> list[RowResult]:
    """Read back the users written and compare them with the plan's ``to`` values (sets ``verified``).

    Results already read back (``verified`` set, e.g. by their chunk) are kept as they are.
    """
    by_key = {(r.key, r.action): r for r in rows}
    written = _to_verify(results)
    ids = sorted({r.associate_id for r in results if (r.key, r.action) in written and r.associate_id is not None})
    current = writer.read_users(ids) if ids else {}
    out: list[RowResult] = []
    for r in results:
        row = by_key.get((r.key, r.action))
        if (r.key, r.action) not in written or row is None or r.associate_id is None:
            out.append(r)
            continue
        now = current.get(r.associate_id)
        differs = ["not found"] if now is None else writer.differences(now, row.to_values())
        detail = f"read-back differs from the plan: {', '.join(differs)}" if differs else r.detail
        out.append(r.model_copy(update={"verified": not differs, "detail": detail}))
    return out


def finish_apply(
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    results: Sequence[RowResult],
    *,
    writer: Writer | Callable[[], Writer] | None = None,
    matched_pairs: pl.DataFrame | None = None,
    baseline: Callable[[], None] | None = None,
) -> ApplyReport:
    """Verify what is left, write the links, drop the pending retirements applied, and (when nothing failed)
    run ``baseline``; return the report.

    ``rows`` are the plan's rows (all of them); ``results`` every chunk's and the held rows' results.
    Chunks read back their own writes, so ``writer`` (or a function making one, closed afterwards) is only
    used when some written result is not read back yet. ``baseline`` saves the Entra delta baseline.
    """
    checked = list(results)
    fresh = _to_verify(results)
    if fresh:
        if writer is None:
            msg = f"{len(fresh)} written rows are not read back yet and no writer was given to read them"
            raise ValueError(msg)
        if isinstance(writer, WriterProtocol):
            checked = verify(writer, rows, results)
        else:
            made = writer()
            try:
                checked = verify(made, rows, results)
            finally:
                made.close()
    _journal_verified(store, plan_hash, [r for r in checked if (r.key, r.action) in fresh])

    pairs: list[tuple[str, str]] = []
    if matched_pairs is not None and matched_pairs.height:
        pairs.extend(
            (str(e), str(a)) for e, a in matched_pairs.select("entra_id", "associate_id").drop_nulls().iter_rows()
        )
    pairs.extend(_new_links(checked, "already_done"))  # applied creates were linked as their chunk journalled them
    if pairs:
        store.upsert_links(pairs)
    retired = [r.associate_id for r in checked if r.action == "retire" and r.outcome in ("applied", "already_done")]
    if retired:  # their grace period, if any, is over (scimflow/plan/_grace.py)
        store.drop_pending([pid for pid in retired if pid is not None])

    planned = sum(1 for r in rows if r.action in CHANGE_ACTIONS)
    report = ApplyReport.from_results(plan_hash, checked, planned=planned)
    if report.failed == 0 and baseline is not None:
        baseline()
    log.info(
        "apply finished: %d applied, %d already done, %d held, %d drifted, %d failed, %d verified",
        report.applied,
        report.already_done,
        report.held,
        report.drifted,
        report.failed,
        report.verified,
    )
    return report
