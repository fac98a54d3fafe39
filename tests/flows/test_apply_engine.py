"""The apply engine's concurrency: shared write slots, chunk turns, and ``apply_plan`` against the emulators."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from flowkit import WIDE, start_tenant, stop_tenant, wait_for

from scimflow import pipeline
from scimflow.apply import ChunkTurns, WritePool, apply_plan, read_plan, split_held
from scimflow.config import load_config
from scimflow.emulators.generate import generate_tenant


def test_the_write_pool_runs_lower_ranks_first() -> None:
    """While the writer is busy, rows of ranks 5, 1, 3 queue up; they then run in rank order."""
    order: list[int] = []
    gate = threading.Event()

    def row(rank: int) -> int:
        if rank == 0:
            gate.wait(5)  # keeps the writer busy until every other row is queued
        else:
            order.append(rank)
        return rank * 10

    with WritePool(1) as writers:
        first = writers.submit(0, row, 0)
        wait_for(lambda: writers.queued == 0, timeout=5, step=0.005)  # the writer took it
        later = [writers.submit(rank, row, rank) for rank in (5, 1, 3)]
        gate.set()
        assert [f.result(5) for f in later] == [50, 10, 30]
        assert first.result(5) == 0
    assert order == [1, 3, 5]


def test_the_write_pool_never_runs_more_rows_than_its_writers() -> None:
    """Twelve rows on three writers: three at a time at most, and all three are used."""
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def row(i: int) -> int:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.02)
        with lock:
            running["now"] -= 1
        return i

    with WritePool(3) as writers:
        futures = [writers.submit(0, row, i) for i in range(12)]
        assert sorted(f.result(5) for f in futures) == list(range(12))
    assert running["max"] == 3


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


def test_apply_plan_keeps_the_write_concurrency_and_verifies_every_create(tmp_path: Path) -> None:
    """``apply_plan`` (no Prefect): 120 creates, at most 3 writes in flight at the server, all read back."""
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
        tenant.so_reset_counters()
        with pipeline.open_store(config) as store:
            report = apply_plan(
                config,
                store,
                outcome.out,
                outcome.plan_hash,
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
