"""How the chunks of one apply share the writers: cutting rows into chunks, the chunks' turns, one pool of
writer threads (oldest chunk first), and the garbage collector kept off the heap built before the apply.

The chunk ordering lives here once: :class:`ChunkTurns` lets chunk *n* start when it is at most
:data:`LOOKAHEAD` past the oldest unfinished chunk, and :class:`WritePool` serves the rows of older chunks
first. The non-Prefect entry point and the flow's chunk tasks both go through
:class:`scimflow.apply.ApplySession`, which owns one of each.
"""

from __future__ import annotations

import gc
import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["LOOKAHEAD", "MAX_CHUNKS", "MIN_CHUNK", "ChunkTurns", "WritePool", "chunk_rows", "frozen_heap"]

_R = TypeVar("_R")

#: At most this many chunks (Prefect task runs) per apply, whatever the number of changes.
MAX_CHUNKS = 10
#: Chunks are at least this large (small plans make one or a few chunks).
MIN_CHUNK = 25
#: Chunks in flight at once: while the oldest writes, the next ones start, journal and re-read.
LOOKAHEAD = 3


def chunk_rows(rows: Sequence[_R], *, max_chunks: int = MAX_CHUNKS, min_size: int = MIN_CHUNK) -> list[list[_R]]:
    """Cut ``rows`` into at most ``max_chunks`` chunks of at least ``min_size`` rows (the last may be smaller)."""
    if not rows:
        return []
    size = max(min_size, math.ceil(len(rows) / max_chunks))
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


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
