"""Running a whole apply: the session the chunks share, and :func:`apply_plan`, the one entry point that
applies a saved plan from start to finish without Prefect.

:class:`ApplySession` is what the chunks of one apply share (the writer, one :class:`WritePool`, the chunk
turns, the frozen heap). :func:`apply_rows` runs chunks through it on local threads; the Prefect flow runs
the same :meth:`ApplySession.run_chunk` from its chunk tasks (on the in-process thread runner, see
``flows/sync.py``), so chunk ordering is written once (:mod:`scimflow.apply._pool`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from scimflow.apply._engine import apply_chunk, finish_apply, hold_rows
from scimflow.apply._outcome import ApplyReport
from scimflow.apply._pool import LOOKAHEAD, ChunkTurns, WritePool, chunk_rows, frozen_heap
from scimflow.apply._rows import PlanRow, RowResult, read_plan, split_held
from scimflow.apply._writer import Writer
from scimflow.writers import new_writer

if TYPE_CHECKING:
    import polars as pl

    from scimflow.config import Config
    from scimflow.connectors.graph import DeltaLinks
    from scimflow.state import StateStore

__all__ = ["HELD_WHY", "ApplySession", "apply_plan", "apply_rows", "entra_baseline"]

log = logging.getLogger(__name__)

#: The journal's detail for rows held by the approval form or over a guardrail budget.
HELD_WHY = "held by the approval form or the guardrails"


class ApplySession:
    """What the chunks of one apply share: one writer, one :class:`WritePool` of ``writer.concurrency``
    threads, the chunks' turns (:class:`ChunkTurns`) and the frozen heap; closed once after the last chunk.

    ``own_writer``: :meth:`close` closes the writer too.
    """

    def __init__(self, writer: Writer, *, lookahead: int = LOOKAHEAD, own_writer: bool = False) -> None:
        self.writer = writer
        self.turns = ChunkTurns(lookahead)
        with ExitStack() as resources:
            if own_writer:
                resources.callback(writer.close)
            self.writers = resources.enter_context(WritePool(writer.concurrency))
            resources.enter_context(frozen_heap())
            self._resources = resources.pop_all()

    def run_chunk(
        self,
        store: StateStore,
        plan_hash: str,
        rows: Sequence[PlanRow],
        index: int,
        *,
        run_id: str | None = None,
        on_result: Callable[[RowResult], None] | None = None,
    ) -> list[RowResult]:
        """Apply chunk ``index`` (from 1) when its turn comes: at most ``lookahead`` chunks past the oldest
        unfinished one, its rows served by the shared writers after older chunks' rows."""
        with self.turns.turn(index):
            return apply_chunk(
                store,
                plan_hash,
                rows,
                self.writer,
                writers=self.writers,
                run_id=run_id,
                on_result=on_result,
                rank=index,
            )

    def close(self) -> None:
        """Let the writer threads finish, end the frozen heap, close the writer when owned."""
        self._resources.close()

    def __enter__(self) -> ApplySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apply_rows(
    store: StateStore,
    plan_hash: str,
    rows: Sequence[PlanRow],
    writer: Writer,
    *,
    run_id: str | None = None,
    lookahead: int = LOOKAHEAD,
    on_result: Callable[[RowResult], None] | None = None,
) -> list[RowResult]:
    """Apply change rows as the flow's chunk tasks do: every chunk of :func:`chunk_rows` through one
    :class:`ApplySession` (``lookahead`` chunks at work). Returns every row's result (chunk order)."""
    chunks = chunk_rows(rows)
    if not chunks:
        return []
    with (
        ApplySession(writer, lookahead=lookahead) as session,
        ThreadPoolExecutor(max_workers=max(1, lookahead), thread_name_prefix="scimflow-chunk") as pool,
    ):
        futures = [
            pool.submit(session.run_chunk, store, plan_hash, chunk, i, run_id=run_id, on_result=on_result)
            for i, chunk in enumerate(chunks, start=1)
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


def entra_baseline(
    config: Config, store: StateStore, frame: pl.DataFrame | None, links: DeltaLinks | None
) -> Callable[[], None] | None:
    """What saves the Entra delta baseline after a successful apply (``None`` when there is none to save)."""
    if frame is None or links is None:
        return None
    return lambda: store.save_baseline(config.tenant_key, frame, links.users, links.groups)


def apply_plan(
    config: Config,
    store: StateStore,
    out: Path,
    plan_hash: str,
    *,
    writer: Writer | None = None,
    hold_actions: Iterable[str] = (),
    hold_users: Iterable[str] = (),
    matched_pairs: pl.DataFrame | None = None,
    entra_frame: pl.DataFrame | None = None,
    entra_links: DeltaLinks | None = None,
    run_id: str | None = None,
    lookahead: int = LOOKAHEAD,
    on_result: Callable[[RowResult], None] | None = None,
) -> ApplyReport:
    """Apply the saved plan in ``out`` from start to finish, without Prefect; the report.

    Reads ``plan.jsonl`` back (:class:`~scimflow.apply.PlanChangedError` unless its hash is ``plan_hash``),
    journals the rows of ``hold_actions`` / ``hold_users`` as held, applies the others in chunks
    (:func:`apply_rows`), then :func:`~scimflow.apply.finish_apply`: read-back of anything not read back,
    the links (``matched_pairs`` and the creates), and the Entra baseline (``entra_frame`` and
    ``entra_links``) when nothing failed. ``writer`` defaults to :func:`new_writer` (closed afterwards).
    """
    rows = read_plan(out, plan_hash)
    go, held = split_held(rows, hold_actions, hold_users)
    with ExitStack() as stack:
        if writer is None:
            writer = new_writer(config)
            stack.callback(writer.close)
        results = apply_rows(store, plan_hash, go, writer, run_id=run_id, lookahead=lookahead, on_result=on_result)
        if held:
            results += hold_rows(store, plan_hash, held, why=HELD_WHY, run_id=run_id)
        return finish_apply(
            store,
            plan_hash,
            rows,
            results,
            writer=writer,
            matched_pairs=matched_pairs,
            baseline=entra_baseline(config, store, entra_frame, entra_links),
        )
