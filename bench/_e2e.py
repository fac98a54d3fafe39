"""End-to-end runs through the plain stage functions (``scimflow.pipeline`` + ``scimflow.apply``).

One call of :func:`run_pipeline` is one sync run, in this (scenario) process, against emulators in another
process: extract, validate, plan, preview, apply (chunks as the flow cuts them, ``write_concurrency`` 8),
with each stage timed and the emulators' ``/_emulator/stats`` read around the apply stage so its requests
and writes are its own. The state store (links, Entra baseline and delta links) lives beside the config,
so a later run is a nightly (delta) run.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._common import Result, Timer, check_cost, peak_rss_mib

__all__ = ["Emulators", "mutate_users", "run_pipeline", "set_superoffice"]

#: The fixed bound parameters (issue 9): 20 ms per request, 8 concurrent writes, 25 requests/s throttled.
LATENCY_S = 0.020
WRITE_CONCURRENCY = 8
THROTTLE_RPS = 25.0


@dataclass(frozen=True)
class Emulators:
    """The emulator pair of a bench run, as the emulator process announced it."""

    graph: str
    superoffice: str
    config: Path
    ca_bundle: Path

    def client(self) -> httpx.Client:
        from scimflow.connectors.http import ssl_context

        return httpx.Client(verify=ssl_context(self.ca_bundle), trust_env=False, timeout=60)

    def stats(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both emulators' ``/_emulator/stats`` (counters; SuperOffice's also ``endpoints``, per method and path)."""
        with self.client() as c:
            return c.get(f"{self.graph}/_emulator/stats").json(), c.get(f"{self.superoffice}/_emulator/stats").json()

    def reset(self) -> None:
        with self.client() as c:
            c.post(f"{self.graph}/_emulator/reset-counters").raise_for_status()
            c.post(f"{self.superoffice}/_emulator/reset-counters").raise_for_status()

    def settings(self) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.get(f"{self.superoffice}/_emulator/settings").json())


def set_superoffice(emu: Emulators, settings: dict[str, Any]) -> None:
    """Change the SuperOffice emulator's settings at run time (``POST /_emulator/settings``)."""
    with emu.client() as c:
        c.post(f"{emu.superoffice}/_emulator/settings", json=settings).raise_for_status()


def mutate_users(emu: Emulators, fraction: float, *, seed: int = 1) -> int:
    """Change ``jobTitle`` of ``fraction`` of the Entra users through the Graph emulator's mutation endpoint."""
    ids = (emu.config.parent / "entra-ids.txt").read_text(encoding="utf-8").split()
    picked = random.Random(seed).sample(ids, max(1, round(len(ids) * fraction)))
    stamp = time.strftime("%H%M%S")

    def one(c: httpx.Client, uid: str) -> None:
        c.patch(f"{emu.graph}/_emulator/users/{uid}", json={"jobTitle": f"Bench Analyst {stamp}"}).raise_for_status()

    with emu.client() as c, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda uid: one(c, uid), picked))
    return len(picked)


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def endpoint_note(after: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """``"PATCH Person/{id} 1,000, GET User 21, ..."``: SuperOffice requests per endpoint between two stats."""
    now: dict[str, int] = after.get("endpoints") or {}
    then: dict[str, int] = (before or {}).get("endpoints") or {}
    counts = {k: int(v) - int(then.get(k, 0)) for k, v in now.items()}
    return ", ".join(
        f"{k.replace(':int', '')} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v
    )


def run_pipeline(
    emu: Emulators,
    *,
    name: str,
    title: str,
    users: int,
    out: Path,
    throttled: bool = False,
    latency: float = LATENCY_S,
    rate_limit_rps: float | None = None,
) -> Result:
    """One sync run through the plain stage functions; figures per stage, requests and peak RSS.

    ``rate_limit_rps``: the SuperOffice emulator's rate limit, set in the config as an operator would
    (``superoffice.rate_limit_rps``) so the plan's cost estimate counts with it.
    """
    from scimflow import pipeline, preview
    from scimflow.apply import apply_plan, chunk_rows, read_plan, split_held
    from scimflow.config import load_config

    config = load_config(emu.config)
    if rate_limit_rps:
        so_cfg = config.require_superoffice().model_copy(update={"rate_limit_rps": rate_limit_rps})
        config = config.model_copy(update={"superoffice": so_cfg})
    rules = pipeline.load_rule_set(config)
    timer = Timer()
    emu.reset()
    with pipeline.open_store(config) as store:
        with timer("extract"):
            t0 = time.perf_counter()
            entra = pipeline.extract_entra(config, store)
            entra_s = time.perf_counter() - t0
            so = pipeline.extract_superoffice(config)
            so_s = time.perf_counter() - t0 - entra_s
        g_extract, s_extract = emu.stats()
        with timer("validate"):
            checked = pipeline.validate(entra.frame, so.users)
        with timer("plan"):
            outcome = pipeline.plan(config, rules, entra, so, checked, store.links(), out,
                                    last_source_users=store.last_successful_source_count())
        with timer("preview"):
            rows = read_plan(outcome.out, outcome.plan_hash)
            preview.preview_markdown(outcome.summary, rows, plan_dir=outcome.out)
            preview.changes_table(rows)
            preview.approval_description(outcome.summary, plan_dir=outcome.out, preview_key="bench-preview")
        run_id = store.start_run("auto", plan_hash=outcome.plan_hash, source_users=outcome.source_users)
        _, s_before = emu.stats()
        with timer("apply"):
            chunks = len(chunk_rows(split_held(rows)[0]))
            report = apply_plan(config, store, outcome.out, outcome.plan_hash, run_id=run_id,
                                matched_pairs=outcome.plan.matched_pairs, entra_frame=entra.frame,
                                entra_links=entra.links)
        g_after, s_after = emu.stats()
        store.finish_run(run_id, "completed" if report.failed == 0 else "failed", {"bench": name},
                         outcome.source_users)
    counts = {k: int(v) for k, v in outcome.summary.items() if isinstance(v, int)}
    changes = outcome.change_rows
    apply_requests = _delta(s_after, s_before, "requests")
    apply_writes = _delta(s_after, s_before, "writes")
    refused = _delta(s_after, s_before, "throttled")
    if throttled:
        # Requests the apply needed (429 answers excluded: pacing badly must not raise the bound).
        bound = (apply_requests - refused) / THROTTLE_RPS
        bound_note = (f"bound = {apply_requests - refused:,} SuperOffice requests / {THROTTLE_RPS:g} per s"
                      f" ({refused} more were answered 429; the emulator's token bucket starts full, a burst of"
                      f" {THROTTLE_RPS:g}, so a ratio slightly under 1 is possible)")
    elif apply_writes == 0:
        bound = None
        bound_note = "no writes to bound (links and the Entra baseline are stored)"
    elif latency > 0:
        bound = apply_writes * latency / WRITE_CONCURRENCY
        bound_note = f"bound = {apply_writes:,} writes x {latency * 1000:g} ms / {WRITE_CONCURRENCY}"
    else:
        bound = None
        bound_note = "no bound: emulator latency 0 (CPU-bound run)"
    apply_s = timer.stages["apply"] or 0.0
    ratio = apply_s / bound if bound else None
    per_change = f"{apply_requests / changes:.1f} requests ({apply_writes / changes:.1f} writes) per change" if changes else ""
    notes = [n for n in (bound_note, per_change) if n]
    if apply_requests:
        notes.append(f"apply's SuperOffice requests: {endpoint_note(s_after, s_before)}")
    notes.append(f"extract: Entra {'full' if entra.full_read else 'delta'} read {entra_s:.1f} s"
                 f" ({_delta(g_extract, {}, 'requests')} Graph requests incl. {_delta(g_extract, {}, 'token_requests')}"
                 f" token), SuperOffice {so_s:.1f} s ({_delta(s_extract, {}, 'requests')} requests)")
    if report.failed or report.drifted:
        notes.append(f"apply: {report.failed} failed, {report.drifted} drifted")
    result = Result(
        name=name, title=title, users=users, stages=timer.stages, total_s=timer.total,
        graph_requests=_delta(g_after, {}, "requests"), so_requests=_delta(s_after, {}, "requests"),
        so_writes=_delta(s_after, {}, "writes"), apply_requests=apply_requests, apply_writes=apply_writes,
        changes=changes, peak_rss_mib=peak_rss_mib(), apply_bound_s=bound, apply_ratio=ratio, notes=notes,
        extra={"counts": counts, "applied": report.applied, "already_done": report.already_done,
               "failed": report.failed, "drifted": report.drifted, "verified": report.verified,
               "chunks": chunks, "extract_so_requests": _delta(s_extract, {}, "requests"),
               "throttled_429": refused, "latency_s": latency,
               "finished_at": time.time()},
        ok=report.failed == 0,
    )
    check_cost(result, outcome.out, apply_s, apply_requests - refused)
    return result
