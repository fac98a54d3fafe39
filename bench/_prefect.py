"""The real ``sync-users`` flow against the bench's local Prefect server, and its task runs counted.

The flow runs in this (scenario) process, approved as ``scimflow sync --approve`` would be; afterwards the
REST API gives the task runs of that flow run (``POST /api/task_runs/count`` and ``/filter``). Stage
times come from the task runs' own run times, so they are the flow's, engine overhead excluded; the
flow run's wall time is reported as the total.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import Result, check_cost, peak_rss_mib
from bench._e2e import LATENCY_S, WRITE_CONCURRENCY, Emulators, endpoint_note

__all__ = ["STAGE_OF_TASK", "count_task_runs", "run_flow"]

#: Which pipeline stage a task belongs to (by task-run name prefix); others are bookkeeping.
STAGE_OF_TASK: dict[str, str] = {
    "extract-entra-users": "extract",
    "extract-superoffice-users": "extract",
    "extract-scim-users": "extract",
    "validate-users": "validate",
    "plan-changes": "plan",
    "publish-preview": "preview",
    "load-approved-plan": "apply",
    "apply-changes": "apply",
    "hold-changes": "apply",
    "finish-changes": "apply",
}


def _flow_filter(flow_run_id: str) -> dict[str, Any]:
    return {"flow_runs": {"id": {"any_": [flow_run_id]}}}


def count_task_runs(api_url: str, flow_run_id: str) -> int:
    """Task runs of one flow run (``POST /api/task_runs/count`` with a flow_runs filter)."""
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30, trust_env=False) as c:
        r = c.post("task_runs/count", json=_flow_filter(flow_run_id))
        r.raise_for_status()
        return int(r.json())


def task_runs(api_url: str, flow_run_id: str) -> list[dict[str, Any]]:
    """The task runs of one flow run (name, run time), at most 200 (the flow's cap is far below)."""
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30, trust_env=False) as c:
        r = c.post("task_runs/filter", json={**_flow_filter(flow_run_id), "limit": 200})
        r.raise_for_status()
        return list(r.json())


def _stage(task_name: str) -> str | None:
    for prefix, stage in STAGE_OF_TASK.items():
        if task_name.startswith(prefix):
            return stage
    return None


def _when(value: object) -> float | None:
    """Seconds since the epoch of a Prefect ISO timestamp (``None`` when absent)."""
    if not value:
        return None
    import datetime as dt

    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _widen(spans: dict[str, tuple[float, float]], key: str, start: float, end: float) -> None:
    """Stretch ``spans[key]`` (first start, last end) to cover ``start``-``end``."""
    lo, hi = spans.get(key, (start, end))
    spans[key] = (min(lo, start), max(hi, end))


def run_flow(emu: Emulators, *, api_url: str, name: str, title: str, users: int, latency: float = LATENCY_S) -> Result:
    """Run ``sync_users`` once (auto mode, approved), then count and time its task runs."""
    from flows.sync import SyncParams, sync_users

    emu.reset()
    t0 = time.perf_counter()
    result = sync_users(SyncParams(config=str(emu.config), mode="auto", cli_approved=True))
    total = time.perf_counter() - t0
    g, s = emu.stats()
    flow_run_id = result.flow_run_id
    if flow_run_id is None:
        msg = "the flow run has no id (was it run against a Prefect API?)"
        raise RuntimeError(msg)
    count = count_task_runs(api_url, flow_run_id)
    runs = task_runs(api_url, flow_run_id)
    stages: dict[str, float | None] = dict.fromkeys(("extract", "validate", "plan", "preview", "apply"))
    # wall-clock spans: of each stage, and of each apply task (chunks as one span: where the apply's time goes
    # besides the writes); chunks run overlapped, so their run times must not be summed
    spans: dict[str, tuple[float, float]] = {}
    parts: dict[str, tuple[float, float]] = {}
    names: dict[str, int] = {}
    for tr in runs:
        base = re.sub(r"-(\d+-of-\d+|[0-9a-f]{3})$", "", str(tr.get("name", "")))  # chunk index, run suffix
        names[base] = names.get(base, 0) + 1
        stage = _stage(base)
        start, end = _when(tr.get("start_time")), _when(tr.get("end_time"))
        if stage is None or start is None or end is None:
            continue
        _widen(spans, stage, start, end)
        if stage == "apply":
            _widen(parts, base, start, end)
    for stage, (lo, hi) in spans.items():
        stages[stage] = hi - lo
    writes = int(s.get("writes", 0))
    changes = result.change_rows
    bound = writes * latency / WRITE_CONCURRENCY if latency > 0 and writes else None
    ratio = (stages["apply"] or 0.0) / bound if bound else None
    report = result.report
    by_name = ", ".join(f"{k} {v}" for k, v in sorted(names.items()))
    notes = [
        f"real flow run {flow_run_id[:8]} on the local Prefect server: {count} task runs ({by_name})",
        f"bound = {writes:,} writes x {latency * 1000:g} ms / {WRITE_CONCURRENCY} (apply = wall-clock span of its tasks, load-approved-plan to finish-changes)",
        f"status {result.status}",
    ]
    if parts:
        first = min(lo for lo, _ in parts.values())
        notes.append("apply stage by task (start-end, s from its start): " + ", ".join(
            f"{name} {lo - first:.2f}-{hi - first:.2f}" for name, (lo, hi) in sorted(parts.items(), key=lambda p: p[1])))
    if changes:
        notes.append(f"{int(s.get('requests', 0)) / changes:.1f} SuperOffice requests ({writes / changes:.1f} writes)"
                     f" per change, whole run: {endpoint_note(s)}")
    out = Result(
        name=name, title=title, users=users, stages=stages, total_s=total,
        graph_requests=int(g.get("requests", 0)), so_requests=int(s.get("requests", 0)), so_writes=writes,
        apply_writes=writes, changes=changes, peak_rss_mib=peak_rss_mib(), task_runs=count, apply_bound_s=bound,
        apply_ratio=ratio, notes=notes,
        extra={"task_runs_by_name": names, "status": result.status, "counts": result.counts,
               "applied": report.applied if report else None, "failed": report.failed if report else None},
        ok=result.status in ("applied", "nothing_to_do"),
    )
    # The estimate covers the apply engine's work (from the first chunk task's start, which makes the writer,
    # to finish-changes' end); what comes before it is the orchestrator's: submitting the chunk tasks, and the
    # tenant's apply slot if the run still waits for it (an --approve run asks for it when it starts).
    chunks = parts.get("apply-changes")
    engine = (max(hi for _, hi in parts.values()) - chunks[0]) if chunks else None
    if chunks and parts.get("load-approved-plan"):
        waited = chunks[0] - parts["load-approved-plan"][1]
        out.notes.append(f"{waited:.2f} s between load-approved-plan and the first apply-changes task (Prefect's"
                         " work: the progress artifact, the tenant's apply slot, submitting the chunk tasks; not in"
                         " the estimate)")
    check_cost(out, result.plan_dir, engine, None, "first apply-changes start to finish-changes end")
    return out


def server_home(root: Path) -> Path:
    """Where the bench's Prefect server keeps its SQLite database and settings."""
    return root / "prefect-home"
