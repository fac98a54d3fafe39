"""The apply engine's concurrency: shared write slots, chunk turns, and ``apply_rows`` against the emulators."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from flowkit import WIDE, start_tenant, stop_tenant, wait_for

from scimflow import pipeline
from scimflow.apply import ChunkTurns, WriteSlots, apply_rows, finish_apply, read_plan, split_held
from scimflow.config import load_config
from scimflow.emulators.generate import generate_tenant


def test_write_slots_hand_a_freed_slot_to_the_lowest_rank_waiting() -> None:
    """With both slots taken, waiters of ranks 5, 1, 3 get a freed slot in rank order, never more than 2 at once."""
    slots = WriteSlots(2)
    slots.acquire(0)
    slots.acquire(0)
    order: list[int] = []
    held = {"now": 2, "max": 2}
    lock = threading.Lock()

    def waiter(rank: int) -> None:
        slots.acquire(rank)
        with lock:
            order.append(rank)
            held["now"] += 1
            held["max"] = max(held["max"], held["now"])
        time.sleep(0.01)
        with lock:
            held["now"] -= 1
        slots.release()

    threads = []
    for queued, rank in enumerate((5, 1, 3), start=1):
        t = threading.Thread(target=waiter, args=(rank,))
        t.start()
        threads.append(t)
        wait_for(lambda queued=queued: slots.waiting == queued, timeout=5, step=0.005)
    with lock:
        held["now"] -= 1
    slots.release()  # one slot free: the waiters go one at a time, lowest rank first
    for t in threads:
        t.join(5)
    assert order == [1, 3, 5]
    assert held["max"] == 2
    assert slots.waiting == 0


def test_chunk_turns_let_a_chunk_start_only_within_the_lookahead() -> None:
    """Chunk i starts only once chunks up to i - lookahead have ended, whatever order the threads start in."""
    turns = ChunkTurns(lookahead=2)
    lock = threading.Lock()
    ended: set[int] = set()
    violations: list[str] = []
    started: list[int] = []

    def chunk(index: int) -> None:
        with turns.turn(index):
            with lock:
                started.append(index)
                missing = [i for i in range(1, index - 1) if i not in ended]
                if missing:
                    violations.append(f"chunk {index} started before {missing} ended")
            time.sleep(0.02)
            with lock:
                ended.add(index)

    threads = [threading.Thread(target=chunk, args=(i,)) for i in range(8, 0, -1)]  # latest first
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert violations == []
    assert sorted(started) == list(range(1, 9))
    assert started[:2] in ([1, 2], [2, 1])  # only the first two could begin at once


def test_apply_rows_keeps_the_write_concurrency_and_verifies_every_create(tmp_path: Path) -> None:
    """``apply_rows`` (no Prefect): 120 creates, at most 3 writes in flight at the server, all read back."""
    graph, so = generate_tenant(120, seed=11, matched_fraction=0.0, disabled_fraction=0.0, contractor_fraction=0.0)
    tenant = start_tenant(tmp_path / "tenant", graph, so, guardrails=WIDE, superoffice_settings={"latency": 0.01})
    try:
        base = load_config(tenant.config)
        config = base.model_copy(update={"superoffice": base.superoffice.model_copy(update={"write_concurrency": 3})})
        outcome, entra, _ = pipeline.run_plan_stages(config, out=tmp_path / "plan")
        rows = read_plan(outcome.out, outcome.plan_hash)
        go, held = split_held(rows)
        creates = [r for r in go if r.action == "create"]
        assert len(creates) >= 100 and not held
        with tenant._client() as c:
            c.post("/_emulator/reset-counters").raise_for_status()
        with pipeline.open_store(config) as store:
            results = apply_rows(config, store, outcome.plan_hash, go)
            report = finish_apply(
                config,
                store,
                outcome.plan_hash,
                rows,
                results,
                matched_pairs=outcome.plan.matched_pairs,
                entra_frame=entra.frame,
                entra_links=entra.links,
            )
        stats = tenant.so_stats()
        assert stats["max_writes_in_flight"] == 3  # the slots were used, and never exceeded
        assert stats["writes"] == 2 * len(creates)  # a person and a user per create
        assert report.applied == len(go) and report.failed == 0
        assert report.verified == len(go)  # each chunk read its own writes back
        names = tenant.users_by_name()
        assert all(len(names[r.key]) == 1 for r in creates)
    finally:
        stop_tenant(tenant)
