"""The apply engine: execute a saved, approved plan against SuperOffice, safely and resumably (no Prefect).

What it guarantees:

- **Exactly the approved plan.** Rows are read back from ``plan.jsonl`` and its sha256 must equal the
  approved ``plan_hash`` (:class:`PlanChangedError` otherwise); nothing is re-planned here. Quarantine
  and conflict rows are never applied; held classes and users are journalled as ``held``.
- **No overwriting of concurrent edits.** Just before a chunk is written, its touched users are re-read in
  one bulk request; a user whose current values are neither the plan's ``from`` (then it is written) nor
  its ``to`` (then it is already done) has *drifted* and is held. Updates are sent as JSON Patch with
  ``test`` operations as well, so a change landing between the re-read and the write is refused by the
  server (``ConflictError`` → drifted).
- **Resumable.** Every row's outcome is journalled under ``(plan_hash, key, action)`` before and after the
  write; a rerun of the same plan skips what is ``applied``/``verified``, creates are idempotent on
  ``UserName`` in the connector, and a row found already at its ``to`` values counts as already done.
- **Journalled in batches, without losing crash safety.** Rows are journalled ``pending`` (one transaction
  per chunk) before any of them is written; outcomes are then journalled in batches of
  :data:`JOURNAL_BATCH` rows, and whatever is buffered is flushed when the chunk ends, normally or by an
  exception. Only a killed process can lose buffered marks, and a lost mark leaves its row ``pending``:
  the rerun re-checks that row instead of repeating it. An update is re-read in bulk first and found at
  its ``to`` values (``already_done``), and its JSON Patch ``test`` ops would refuse a second write over
  changed values anyway; a create finds its user by ``UserName`` (the connector's idempotency) and returns
  it, reusing a person an interrupted attempt left behind. So batching can cost a re-check, never a
  duplicate or a lost change, and the ``pending`` mark written before each write is what keeps that true.
- **Creates in bulk.** A chunk's creates have their user names checked in one ``userName oneOf`` read and
  the taken short names read once, side by side with the drift re-read. Only a create the journal has seen
  before (under any plan: a rerun after a crash plans again) looks for a person an interrupted attempt left
  behind; a row the journal has never seen cannot have written one, as ``pending`` precedes every write.
- **Read once, written once.** The chunk's bulk re-read is also what an update is written from: the
  connector's ``test`` ops carry the values it returned (no ``GET`` per user). Callers applying several
  chunks pass one target, the reference read once, and one pool of writers (:class:`WritePool`, oldest
  chunk first), so chunks may overlap (the next ones re-read while this one writes) without exceeding
  ``write_concurrency``, and finish one after the other instead of all together.
- **Bounded.** Rows are cut into at most :data:`MAX_CHUNKS` chunks; across all chunks at most
  ``superoffice.write_concurrency`` rows are being written at once (each row's requests one after another).
- **Checked.** When a chunk's writes are done, its touched users are read back in one bulk request (while
  the next chunks write) and compared with the plan's ``to`` values.

The Prefect layer runs :func:`apply_chunk` once per chunk and :func:`finish_apply` once; :func:`apply_rows`
does the same without Prefect (the same chunks, target, writers and look-ahead).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from scimflow.connectors.errors import ConflictError, ConnectorError

if TYPE_CHECKING:
    from scimflow.config import Config
    from scimflow.connectors.graph import DeltaLinks
    from scimflow.frames import Reference
    from scimflow.state import StateStore

__all__ = [
    "CHANGE_ACTIONS",
    "LOOKAHEAD",
    "MAX_CHUNKS",
    "ApplyReport",
    "ChunkTurns",
    "PlanChangedError",
    "PlanRow",
    "RowResult",
    "WritePool",
    "apply_chunk",
    "apply_rows",
    "chunk_rows",
    "finish_apply",
    "frozen_heap",
    "hold_rows",
    "new_target",
    "outcome_counts",
    "plan_file_hash",
    "read_plan",
    "split_held",
]

log = logging.getLogger(__name__)

CHANGE_ACTIONS: tuple[str, ...] = ("create", "update", "retire", "reactivate")
#: At most this many chunks (Prefect task runs) per apply, whatever the number of changes.
MAX_CHUNKS = 10
#: Chunks are at least this large (small plans make one or a few chunks).
MIN_CHUNK = 25
#: Chunks in flight at once: while the oldest writes, the next ones start, journal and re-read.
LOOKAHEAD = 3
#: Row outcomes are journalled in one transaction per this many rows (or per this many seconds).
JOURNAL_BATCH = 32
JOURNAL_BATCH_SECONDS = 0.25

Outcome = Literal["applied", "already_done", "held", "drifted", "failed"]
_CASELESS = frozenset({"user_name", "email"})


class PlanChangedError(RuntimeError):
    """``plan.jsonl`` on disk is not the plan that was approved (its hash differs): nothing is applied."""


class PlanRow(BaseModel):
    """One line of ``plan.jsonl``."""

    model_config = ConfigDict(frozen=True)

    action: str
    key: str
    entra_id: str | None = None
    associate_id: int | None = None
    rules: list[str] = Field(default_factory=list)
    changes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reason: str | None = None

    def to_values(self) -> dict[str, Any]:
        """``{field: to}`` of every change."""
        return {k: v.get("to") for k, v in self.changes.items()}

    def from_values(self) -> dict[str, Any]:
        """``{field: from}`` of every change."""
        return {k: v.get("from") for k, v in self.changes.items()}


class RowResult(BaseModel):
    """What happened to one plan row."""

    key: str
    action: str
    outcome: Outcome
    entra_id: str | None = None
    associate_id: int | None = None
    detail: str | None = None
    verified: bool | None = None


def outcome_counts(
    results: Iterable[RowResult], outcomes: Sequence[str] = ("applied", "already_done", "drifted", "failed")
) -> dict[str, int]:
    """``{outcome: how many results have it}`` for each of ``outcomes``, in that order."""
    counts = dict.fromkeys(outcomes, 0)
    for r in results:
        if r.outcome in counts:
            counts[r.outcome] += 1
    return counts


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
        """Every planned change is in SuperOffice (applied now or before)."""
        return self.applied + self.already_done == self.planned

    def outcomes(self) -> pl.DataFrame:
        """Per-row outcomes as a frame (key, action, outcome, entra_id, associate_id, detail, verified)."""
        schema = {
            "key": pl.String,
            "action": pl.String,
            "outcome": pl.String,
            "entra_id": pl.String,
            "associate_id": pl.Int64,
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


# --- reading and cutting the plan ---------------------------------------------------------------


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


def chunk_rows(
    rows: Sequence[PlanRow], *, max_chunks: int = MAX_CHUNKS, min_size: int = MIN_CHUNK
) -> list[list[PlanRow]]:
    """Cut ``rows`` into at most ``max_chunks`` chunks of at least ``min_size`` rows (the last may be smaller)."""
    if not rows:
        return []
    size = max(min_size, math.ceil(len(rows) / max_chunks))
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


# --- comparing ----------------------------------------------------------------------------------


def _norm(field: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    if field == "secondary_groups" and value is None:
        return frozenset()
    if field == "confidential" and value is None:
        return False
    if isinstance(value, str):
        v = value.strip().lower() if field in _CASELESS else value
        return v if v != "" else None
    return value


def _blank_str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _current_value(current: dict[str, Any], field: str) -> Any:
    if field == "active":
        retired = current.get("retired")
        return None if retired is None else not retired
    return current.get(field)


def _matches(current: dict[str, Any], values: dict[str, Any]) -> bool:
    return all(_norm(f, _current_value(current, f)) == _norm(f, v) for f, v in values.items())


def _differences(current: dict[str, Any], values: dict[str, Any]) -> list[str]:
    return [f for f, v in values.items() if _norm(f, _current_value(current, f)) != _norm(f, v)]


# --- writing ------------------------------------------------------------------------------------


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, the objects alive at its start are left out of garbage collection (``gc.freeze``).

    The apply allocates fast (requests, answers, results) while the process holds everything the run built
    before it: frames, the plan, the orchestrator's state. Every full collection would scan all of that
    again, stopping every writer thread for a tenth of a second or more each time; frozen, those objects
    are not scanned. Reference counting still frees them as usual; the block's end unfreezes them.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def new_target(config: Config) -> Any:
    """A :class:`~scimflow.connectors.superoffice.SuperOfficeTarget` for ``config`` (the caller closes it)."""
    from scimflow.connectors.superoffice import SuperOfficeTarget

    return SuperOfficeTarget(config.superoffice, ca_bundle=config.ca_bundle)


class WritePool:
    """The ``write_concurrency`` writer threads shared by the chunks of one apply, oldest chunk's rows first.

    Each writer sends one row at a time (a create's person and user, an update's one or two PATCHes), so at
    most ``workers`` write requests are in flight across every chunk. A writer that finishes a row takes the
    next one itself, at once: no hand-over to another thread between rows. Rows wait in one priority queue
    by chunk rank, so chunks finish one after the other and a later chunk's rows fill the writers an earlier
    chunk's tail leaves free (a plain pool per chunk would let chunks progress side by side and end together).
    """

    def __init__(self, workers: int, *, name: str = "scimflow-write") -> None:
        self._queue: queue.PriorityQueue[tuple[float, int, Any]] = queue.PriorityQueue()
        self._tickets = itertools.count()
        self._chunks = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def new_chunk(self) -> int:
        """The next chunk's rank (lower ranks are written first)."""
        return next(self._chunks)

    def submit(self, rank: int, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``fn(*args)`` at ``rank``; its future resolves once a writer has run it."""
        future: Future[Any] = Future()
        self._queue.put((rank, next(self._tickets), (future, fn, args)))
        return future

    @property
    def queued(self) -> int:
        """Rows waiting for a writer now."""
        return self._queue.qsize()

    def close(self) -> None:
        """Let the writers finish what is queued, then stop them."""
        for _ in self._threads:
            self._queue.put((math.inf, next(self._tickets), None))
        for t in self._threads:
            t.join()

    def __enter__(self) -> WritePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the chunk waiting on the future
                future.set_exception(exc)


class ChunkTurns:
    """When each chunk of one apply may start: in index order, at most ``lookahead`` past the oldest unfinished.

    The flow submits every chunk's task at once and each task waits here for its turn, which comes the moment
    an earlier chunk ends, not when the orchestrator has recorded that end (a round trip that would leave
    the writers idle between chunks). Indexes start at 1.
    """

    def __init__(self, lookahead: int = LOOKAHEAD) -> None:
        self._cond = threading.Condition()
        self._lookahead = max(1, lookahead)
        self._oldest = 1  # the lowest index not finished yet
        self._finished: set[int] = set()

    @contextmanager
    def turn(self, index: int) -> Iterator[None]:
        """Wait until chunk ``index`` may start, run the block, then let the next chunk start."""
        with self._cond:
            while index >= self._oldest + self._lookahead:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._finished.add(index)
                while self._oldest in self._finished:
                    self._finished.discard(self._oldest)
                    self._oldest += 1
                self._cond.notify_all()


class _Create:
    """What the chunk read for a create before writing: its user name's users, and whether it was started before."""

    __slots__ = ("existing", "retry")

    def __init__(self, existing: list[dict[str, Any]] | None, retry: bool) -> None:
        self.existing = existing
        self.retry = retry


def _write_row(target: Any, ref: Reference, row: PlanRow, current: dict[str, Any] | _Create | None) -> RowResult:
    """Send one row's change to SuperOffice; connector errors become a ``drifted``/``failed`` result.

    ``current`` is the user's record from the chunk's drift re-read: updates write from it (no second read).
    For a create it is the :class:`_Create` context (the bulk user-name read, and the journal's verdict on
    whether an earlier attempt may have left a person behind).
    """
    base = {"key": row.key, "action": row.action, "entra_id": row.entra_id, "associate_id": row.associate_id}
    try:
        if row.action == "create":
            fields = {k: v for k, v in row.to_values().items() if v is not None and k != "active"}
            if isinstance(current, _Create):
                new_id = int(target.create_user(fields, ref, retry=current.retry, existing=current.existing))
            else:
                new_id = int(target.create_user(fields, ref))
            return RowResult(**{**base, "associate_id": new_id}, outcome="applied")
        assert not isinstance(current, _Create)
        aid = row.associate_id
        if aid is None:
            return RowResult(**base, outcome="failed", detail="no associate_id in the plan row")
        other = {k: v for k, v in row.changes.items() if k != "active"}
        active = row.changes.get("active")
        if active is not None and active.get("to") is False:
            if other:
                target.update_user(aid, other, ref, current=current)
            target.retire(aid)
        elif active is not None and active.get("to") is True:
            target.reactivate(aid)
            if other:  # reactivation changed the user after the re-read: read it again
                target.update_user(aid, other, ref)
        elif other:
            target.update_user(aid, other, ref, current=current)
        return RowResult(**base, outcome="applied")
    except ConflictError as exc:
        return RowResult(**base, outcome="drifted", detail=f"changed in SuperOffice during the write: {exc}")
    except ConnectorError as exc:
        return RowResult(**base, outcome="failed", detail=str(exc))


def _started_creates(store: StateStore, rows: Sequence[PlanRow]) -> set[str]:
    """Keys of create rows the journal has seen before, under any plan.

    A create that was journalled before (``pending``, ``failed``, …) may have been interrupted between its
    person and its user, possibly under an earlier plan (a rerun after a crash plans again); only those rows
    look for a person left behind. Rows are journalled ``pending`` before any write, so a create the journal
    has never seen wrote nothing. Matched by key or by Entra id (a renamed user keeps its id).
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


def _records(frame: pl.DataFrame) -> dict[int, dict[str, Any]]:
    return {int(r["associate_id"]): r for r in frame.iter_rows(named=True) if r.get("associate_id") is not None}


def _mark(store: StateStore, plan_hash: str, results: Iterable[RowResult]) -> None:
    status = {"applied": "applied", "already_done": "applied", "held": "held", "drifted": "drifted", "failed": "failed"}
    store.journal_mark_many(
        plan_hash, [(r.key, r.action, status[r.outcome], r.detail, r.associate_id) for r in results]
    )


def _journal_verified(store: StateStore, plan_hash: str, results: Iterable[RowResult]) -> None:
    """Journal the results whose read-back matched the plan as ``verified``."""
    verified = [(r.key, r.action, "verified", None, r.associate_id) for r in results if r.verified]
    if verified:
        store.journal_mark_many(plan_hash, verified)


def hold_rows(
    store: StateStore, plan_hash: str, rows: Iterable[PlanRow], *, why: str, run_id: str | None = None
) -> list[RowResult]:
    """Journal ``rows`` as ``held`` (by the form, or over a guardrail budget) and return their results."""
    rows = list(rows)
    store.journal_begin(plan_hash, [r.model_dump() for r in rows], run_id=run_id)
    results = [
        RowResult(
            key=r.key, action=r.action, entra_id=r.entra_id, associate_id=r.associate_id, outcome="held", detail=why
        )
        for r in rows
    ]
    _mark(store, plan_hash, results)
    return results


class _JournalBuffer:
    """Row outcomes waiting to be journalled: flushed in one transaction per :data:`JOURNAL_BATCH` rows.

    Only the chunk's collecting thread uses it; :meth:`flush` also runs when the chunk ends (even by an
    exception), so only a killed process loses marks, and a lost mark re-checks a row, never repeats it.
    """

    def __init__(self, store: StateStore, plan_hash: str) -> None:
        self.store = store
        self.plan_hash = plan_hash
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
        links = [
            (r.entra_id, r.associate_id)
            for r in batch
            if r.action == "create" and r.outcome == "applied" and r.entra_id and r.associate_id
        ]
        if links:
            self.store.upsert_links(links)


def apply_chunk(
    config: Config,
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    *,
    target: Any = None,
    ref: Reference | None = None,
    writers: WritePool | None = None,
    run_id: str | None = None,
    on_result: Callable[[RowResult], None] | None = None,
    rank: int | None = None,
) -> list[RowResult]:
    """Apply one chunk of change rows: journal, re-read touched users, hold drift, write, journal, read back.

    ``target`` defaults to a :class:`~scimflow.connectors.superoffice.SuperOfficeTarget` built from
    ``config``, and ``writers`` to a :class:`WritePool` of ``write_concurrency`` (both closed afterwards);
    callers applying several chunks pass one target, its ``ref`` (read once) and one pool shared by the
    chunks running side by side, so the next chunk's re-read overlaps this chunk's writes without
    exceeding the write concurrency. ``rank`` orders this chunk's rows among the chunks sharing the pool
    (lower first; by default, the order in which chunks reach their writes).
    Errors other than the connector's per-row errors propagate; the journal then still says ``pending``
    for the rows in flight, and a rerun sorts them out.
    """
    own_target, own_pool = target is None, writers is None
    if target is None:
        target = new_target(config)
    if writers is None:
        writers = WritePool(config.superoffice.write_concurrency)
    try:
        return _apply_chunk(config, store, plan_hash, rows, target, ref, writers, run_id, on_result, rank)
    finally:
        if own_pool:
            writers.close()
        if own_target:
            target.close()


def _apply_chunk(
    config: Config,
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    target: Any,
    ref: Reference | None,
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
            results.append(
                RowResult(
                    key=row.key,
                    action=row.action,
                    entra_id=row.entra_id,
                    associate_id=row.associate_id,
                    outcome="already_done",
                    detail="journalled as applied",
                )
            )
        else:
            todo.append(row)

    # Re-read every touched user in one request, just before writing: drift is held, never overwritten.
    # Creates: their user names in one bulk read and the taken short names, side by side with the re-read.
    ids = sorted({r.associate_id for r in todo if r.action != "create" and r.associate_id is not None})
    creates = [r for r in todo if r.action == "create"]
    names = [str(n) for r in creates if (n := r.changes.get("user_name", {}).get("to"))]
    bulk = hasattr(target, "find_by_user_names")
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="scimflow-reread") as pool:
        reread = pool.submit(target.read_users_by_id, ids) if ids else None
        found = pool.submit(target.find_by_user_names, names) if names and bulk else None
        people = [
            (r.changes.get("first_name", {}).get("to"), r.changes.get("last_name", {}).get("to")) for r in creates
        ]
        prepared = pool.submit(target.prepare_names, people) if people and bulk else None
        current = _records(reread.result()) if reread is not None else {}
        users = found.result() if found is not None else None
        if prepared is not None:
            prepared.result()
    writes: list[tuple[PlanRow, dict[str, Any] | _Create | None]] = []
    for row in todo:
        base = {"key": row.key, "action": row.action, "entra_id": row.entra_id, "associate_id": row.associate_id}
        if row.action == "create":
            name = _blank_str(row.changes.get("user_name", {}).get("to"))
            existing = users.get(name.casefold(), []) if users is not None and name else None
            writes.append((row, _Create(existing, row.key in started)))
            continue
        now = current.get(row.associate_id) if row.associate_id is not None else None
        if now is None:
            results.append(RowResult(**base, outcome="drifted", detail="the user is gone from SuperOffice"))
        elif _matches(now, row.to_values()):
            results.append(RowResult(**base, outcome="already_done", detail="already at the planned values"))
        elif _matches(now, row.from_values()):
            writes.append((row, now))
        else:
            fields = ", ".join(_differences(now, row.from_values()))
            results.append(
                RowResult(**base, outcome="drifted", detail=f"changed in SuperOffice since the plan: {fields}")
            )
    _mark(store, plan_hash, results)

    if writes:
        if ref is None:
            ref = target.read_reference()
        journal = _JournalBuffer(store, plan_hash)
        if rank is None:
            rank = writers.new_chunk()
        futures = [writers.submit(rank, _write_row, target, ref, row, now) for row, now in writes]
        try:
            for future in as_completed(futures):
                result = future.result()
                journal.add(result)
                if on_result is not None:
                    on_result(result)
                results.append(result)
        except BaseException:
            for future in futures:  # rows no writer has started are not sent
                future.cancel()
            wait(futures)  # nor is this chunk left while its rows are being written
            raise
        finally:
            journal.flush()
    # Read back what this chunk wrote (one bulk read), while the next chunks write.
    results = verify(target, rows, results)
    _journal_verified(store, plan_hash, results)
    counts = outcome_counts(results)
    log.info("chunk of %d rows: %s", len(rows), ", ".join(f"{k} {v}" for k, v in counts.items()))
    return results


def apply_rows(
    config: Config,
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    *,
    target: Any = None,
    run_id: str | None = None,
    lookahead: int = LOOKAHEAD,
    on_result: Callable[[RowResult], None] | None = None,
) -> list[RowResult]:
    """Apply change rows without Prefect, as the flow's chunk tasks do: every chunk of :func:`chunk_rows`
    through :func:`apply_chunk` with one target (logged in once), one reference read and one
    :class:`WritePool`, ``lookahead`` chunks in flight. Returns every row's result (chunk order)."""
    chunks = chunk_rows(rows)
    if not chunks:
        return []
    own = target is None
    if target is None:
        target = new_target(config)
    writers = WritePool(config.superoffice.write_concurrency)
    try:
        ref = target.read_reference()
        with (
            frozen_heap(),
            ThreadPoolExecutor(max_workers=max(1, lookahead), thread_name_prefix="scimflow-chunk") as pool,
        ):
            futures = [
                pool.submit(
                    apply_chunk,
                    config,
                    store,
                    plan_hash,
                    chunk,
                    target=target,
                    ref=ref,
                    writers=writers,
                    run_id=run_id,
                    on_result=on_result,
                    rank=rank,
                )
                for rank, chunk in enumerate(chunks)
            ]
            results: list[RowResult] = []
            try:
                for future in futures:
                    results += future.result()
            except BaseException:
                for future in futures:  # chunks not started yet stay unwritten (journal: never begun)
                    future.cancel()
                raise
        return results
    finally:
        writers.close()
        if own:
            target.close()


# --- after the chunks ---------------------------------------------------------------------------


def _to_verify(results: Iterable[RowResult]) -> set[tuple[str, str]]:
    """``(key, action)`` of the results written (now or before) and not read back yet."""
    return {
        (r.key, r.action)
        for r in results
        if r.outcome in ("applied", "already_done") and r.associate_id is not None and r.verified is None
    }


def verify(target: Any, rows: Sequence[PlanRow], results: Sequence[RowResult]) -> list[RowResult]:
    """Read back the users written and compare them with the plan's ``to`` values (sets ``verified``).

    Results already read back (``verified`` set, e.g. by their chunk) are kept as they are.
    """
    by_key = {(r.key, r.action): r for r in rows}
    written = _to_verify(results)
    ids = sorted({int(r.associate_id) for r in results if (r.key, r.action) in written and r.associate_id is not None})
    current = _records(target.read_users_by_id(ids)) if ids else {}
    out: list[RowResult] = []
    for r in results:
        row = by_key.get((r.key, r.action))
        if (r.key, r.action) not in written or row is None or r.associate_id is None:
            out.append(r)
            continue
        now = current.get(r.associate_id)
        ok = now is not None and _matches(now, row.to_values())
        detail = r.detail
        if not ok:
            missing = "not found" if now is None else ", ".join(_differences(now, row.to_values()))
            detail = f"read-back differs from the plan: {missing}"
        out.append(r.model_copy(update={"verified": ok, "detail": detail}))
    return out


def finish_apply(
    config: Config,
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    results: Sequence[RowResult],
    *,
    matched_pairs: pl.DataFrame | None = None,
    entra_frame: pl.DataFrame | None = None,
    entra_links: DeltaLinks | None = None,
    target: Any = None,
) -> ApplyReport:
    """Verify, write the links, and (when nothing failed) advance the Entra baseline; return the report.

    ``rows`` are the plan's rows (all of them); ``results`` every chunk's and the held rows' results.
    """
    checked = list(results)
    fresh = _to_verify(results)  # chunks read back (and journal) their own writes; only others are left
    if fresh:
        own = target is None
        if target is None:
            target = new_target(config)
        try:
            checked = verify(target, rows, results)
        finally:
            if own:
                target.close()
    _journal_verified(store, plan_hash, [r for r in checked if (r.key, r.action) in fresh])

    pairs: list[tuple[str, int]] = []
    if matched_pairs is not None and matched_pairs.height:
        pairs.extend(
            (str(e), int(a)) for e, a in matched_pairs.select("entra_id", "associate_id").drop_nulls().iter_rows()
        )
    pairs.extend(  # applied creates were linked as their chunk journalled them
        (r.entra_id, r.associate_id)
        for r in checked
        if r.action == "create" and r.outcome == "already_done" and r.entra_id and r.associate_id
    )
    if pairs:
        store.upsert_links(pairs)

    planned = sum(1 for r in rows if r.action in CHANGE_ACTIONS)
    report = ApplyReport.from_results(plan_hash, checked, planned=planned)
    if report.failed == 0 and entra_frame is not None and entra_links is not None:
        store.save_baseline(config.tenant_key, entra_frame, entra_links.users, entra_links.groups)
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


def plan_rows_json(rows: Sequence[PlanRow]) -> str:
    """The rows as JSON lines (for tests and tools)."""
    return "\n".join(json.dumps(r.model_dump(), sort_keys=True) for r in rows)


# --- the run's outcome (shared by the flow, ``scimflow sync`` and the demo) -----------------------

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
