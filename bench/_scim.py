"""The SCIM bench scenario: an initial push of N generated users into the SCIM emulator (scim2-server).

Two entry points, each its own process like the rest of the bench:

    python -m bench._scim serve --folder DIR --users N [--latency 0.02] [--dialect rfc]
    python -m bench._scim run --out RESULT.json --params JSON

``serve`` hosts the Graph emulator (the generated tenant) and an empty SCIM emulator (``EmulatorHost`` with
``target="scim"``, ``write_concurrency`` 8, both with ``latency``), prints one JSON line and serves until
stdin closes. ``run`` is one sync through the plain stage functions in SCIM mode (the pipeline's SCIM wiring
is the lead's; this calls the same pieces): Entra extract, ``read_scim_state``, validate, ``plan_scim``,
``write_plan_files``, then :func:`scimflow.apply.apply_plan` (the project's non-Prefect apply of a saved
plan), timed per stage, with the SCIM emulator's ``/_emulator/stats`` read around the apply.

Bound (issue 17): the minimal requests, one ``POST /Users`` per user + one ``POST /Groups`` per computed
group + one ``PATCH /Groups/{id}`` per batch of members per group, x latency / 8.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

from bench._common import Result, Timer, check_cost, peak_rss_mib

__all__ = ["main", "run_scim_push", "scim_bound"]

WRITE_CONCURRENCY = 8
#: Members per group PATCH (the ScimClient's default ``member_batch``).
MEMBER_BATCH = 100


def scim_bound(users: int, group_sizes: list[int], latency: float, *, batch: int = MEMBER_BATCH) -> tuple[int, float]:
    """(minimal requests, bound seconds): a POST per user and per group, a PATCH per ``batch`` members per group."""
    patches = sum(math.ceil(n / batch) for n in group_sizes if n)
    requests = users + len(group_sizes) + patches
    return requests, requests * latency / WRITE_CONCURRENCY


# --- the emulator process ------------------------------------------------------------------------------


def serve(folder: Path, users: int, latency: float, dialect: str, seed: int) -> int:
    """Host Graph (``users`` generated) and an empty SCIM emulator; print their addresses; serve until stdin closes."""
    from bench._emulate import OPEN_GUARDRAILS, tenant
    from scimflow.emulators.host import EmulatorHost

    t0 = time.perf_counter()
    graph, _so = tenant("creates", users, seed)
    folder.mkdir(parents=True, exist_ok=True)
    host = EmulatorHost(
        graph, {}, folder, graph_settings={"latency": latency}, target="scim", scim_dialect=dialect,  # type: ignore[arg-type]
        scim_settings={"latency": latency}, write_concurrency=WRITE_CONCURRENCY,
        state_url=f"sqlite:///{folder / 'state.db'}", guardrails=OPEN_GUARDRAILS,
    )  # fmt: skip
    del graph, _so
    with host:
        # The loaded tenants (10,000s of objects) live as long as the process: frozen, the collector's full
        # passes skip them (each one otherwise stopped the emulators' event loops for ~130 ms at 10k users).
        gc.collect()
        gc.freeze()
        info = {"graph": host.graph_origin, "scim": host.scim_origin, "config": str(host.config_path),
                "ca_bundle": str(host.ca_bundle), "startup_s": round(time.perf_counter() - t0, 2),
                "round_trip_url": host.scim_base_url + "/ServiceProviderConfig"}  # fmt: skip
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        sys.stdin.read()
    return 0


# --- the scenario process ------------------------------------------------------------------------------


def _stats(client: httpx.Client, origin: str) -> dict[str, Any]:
    return dict(client.get(f"{origin}/_emulator/stats").json())


def _per_kind(after: dict[str, Any], before: dict[str, Any], key: str) -> dict[str, float]:
    now, then = after.get(key) or {}, before.get(key) or {}
    return {k: float(v) - float(then.get(k, 0)) for k, v in now.items() if float(v) - float(then.get(k, 0))}


def run_scim_push(p: dict[str, Any]) -> Result:
    """One initial push through the stage functions in SCIM mode; figures, requests per kind, server time per kind."""
    import polars as pl

    from scimflow import pipeline
    from scimflow.apply import apply_plan
    from scimflow.config import load_config
    from scimflow.connectors.http import ssl_context
    from scimflow.connectors.scim import ScimClient, read_scim_state
    from scimflow.frames import SO_SCHEMA
    from scimflow.plan import evaluate_guardrails, plan_scim, write_plan_files
    from scimflow.plan._cost import RoundTrips

    e = p["emulators"]
    name, title, users_n = p["name"], p["title"], int(p["users"])
    latency = float(p.get("latency", 0.02))
    out = Path(p["out"])
    config = load_config(e["config"])
    scim = config.require_scim()
    rules = pipeline.load_rule_set(config)
    timer = Timer()
    admin = httpx.Client(verify=ssl_context(Path(e["ca_bundle"])), trust_env=False, timeout=60)
    admin.post(f"{e['scim']}/_emulator/reset-counters").raise_for_status()
    with pipeline.open_store(config) as store:
        with timer("extract"):
            entra = pipeline.extract_entra(config, store)
            trips = RoundTrips()  # as pipeline.extract_scim times the SCIM reads (the cost of the plan)
            with ScimClient(scim, ca_bundle=config.ca_bundle) as client:
                trips.attach(client.http)
                scim_users, scim_groups = read_scim_state(client)
        with timer("validate"):
            checked = pipeline.validate(entra.frame, pl.DataFrame(schema=SO_SCHEMA))
        with timer("plan"):
            plan = plan_scim(checked.entra_all, scim_users, scim_groups, rules, store.links(), checked.quarantine,
                             prefix=scim.group_prefix)  # fmt: skip
            verdict = evaluate_guardrails(plan, config.guardrails, entra.source_users, None)
            plan_hash = write_plan_files(plan, verdict, out)
            pipeline.plan_cost_files(config, pipeline.ScimExtract(scim_users, scim_groups, trips.timing()), out,
                                     plan_hash, verdict.held)  # fmt: skip
        before = _stats(admin, e["scim"])
        run_id = store.start_run("auto", plan_hash=plan_hash, source_users=entra.source_users)
        with timer("apply"):
            report = apply_plan(config, store, out, plan_hash, run_id=run_id, matched_pairs=plan.matched_pairs,
                                entra_frame=entra.frame, entra_links=entra.links)  # fmt: skip
        after = _stats(admin, e["scim"])
        store.finish_run(run_id, "completed" if report.failed == 0 else "failed", {"bench": name}, entra.source_users)
    snapshot = admin.get(f"{e['scim']}/_emulator/snapshot").json()
    admin.close()
    created = len(snapshot["users"])
    sizes = [len(g.get("members") or []) for g in snapshot["groups"]]
    minimal, bound = scim_bound(created, sizes, latency)
    counts = {k: int(v) for k, v in _per_kind(after, before, "endpoints").items()}
    busy = _per_kind(after, before, "busy_ms")
    requests = int(after["requests"]) - int(before["requests"])
    apply_s = timer.stages["apply"] or 0.0
    notes = [
        f"dialect {scim.dialect}, write_concurrency {scim.write_concurrency}, {MEMBER_BATCH} members per group PATCH",
        f"bound = {minimal:,} minimal requests ({created:,} POST /Users + {len(sizes)} POST /Groups + "
        f"{minimal - created - len(sizes)} member PATCHes) x {latency * 1000:g} ms / {WRITE_CONCURRENCY}",
        f"{requests / max(created, 1):.2f} SCIM requests per user in the apply ({requests:,} requests,"
        f" {minimal / max(created, 1):.2f} minimal)",
        "apply's SCIM requests: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])),
    ]
    if busy:
        per = {k: busy[k] / counts[k] for k in busy if counts.get(k)}
        notes.append(
            "emulator (scim2-server) time per request, answer start minus arrival (its processing plus waiting for"
            " its one event loop; the 20 ms latency excluded): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
            + f"; {sum(busy.values()) / 1000:.1f} s in all over a {apply_s:.1f} s apply"
        )
        if sum(busy.values()) / 1000 > 0.5 * apply_s:
            notes.append(
                "the emulator (one Python process, one event loop, on a shared machine) was busy for most of the apply:"
                " it, not the writer's request count, bounds this figure"
            )
    if report.failed or report.drifted:
        notes.append(f"apply: {report.failed} failed, {report.drifted} drifted")
    result = Result(
        name=name, title=title, users=users_n, stages=timer.stages, total_s=timer.total,
        so_requests=int(after["requests"]), so_writes=int(after.get("writes", 0)),
        apply_requests=requests, apply_writes=int(after.get("writes", 0)) - int(before.get("writes", 0)),
        changes=created, peak_rss_mib=peak_rss_mib(), apply_bound_s=bound,
        apply_ratio=apply_s / bound if bound else None, notes=notes,
        extra={"applied": report.applied, "failed": report.failed, "scim_users": created, "groups": len(sizes),
               "requests_per_user": requests / max(created, 1), "endpoints": counts, "busy_ms": busy},
        ok=report.failed == 0 and created == users_n,
        error=None if created == users_n else f"{created:,} SCIM users after the push, {users_n:,} expected",
    )  # fmt: skip
    check_cost(result, out, apply_s, requests)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._scim")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--folder", type=Path, required=True)
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--latency", type=float, default=0.02)
    s.add_argument("--dialect", choices=["entra", "rfc"], default="rfc")
    s.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.folder, args.users, args.latency, args.dialect, args.seed)
    params = json.loads(args.params)
    try:
        result = run_scim_push(params)
    except Exception as exc:  # the process boundary: the harness reports the failure
        result = Result(name=params.get("name", "scim"), title=params.get("title", "scim"),
                        users=int(params.get("users", 0)), ok=False, error=f"{type(exc).__name__}: {exc}",
                        notes=[traceback.format_exc(limit=6)])  # fmt: skip
    args.out.write_text(result.to_json(), encoding="utf-8")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
