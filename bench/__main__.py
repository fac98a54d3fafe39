"""``make bench`` = ``python -m bench``: speed, memory and scaling of the whole pipeline, against its bounds.

Writes ``bench/results.md`` (machine, date, commit, the table, the targets) and prints the same table.
``BENCH_FULL=1`` adds the initial sync of 100,000 creates at 20 ms per request (its bound alone is
200,000 writes x 20 ms / 8 = 500 s, so it does not fit the default run's 10-minute budget).

Options: ``--out DIR`` (where results.md goes; default ``bench/``), ``--budget SECONDS`` (default 580),
``--only NAME,...`` (scenario names), ``--smoke`` (a 50-user run with no latency, for the tests).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench._common import Result
from bench._e2e import THROTTLE_RPS
from bench._harness import (
    EmulatorSpec,
    Group,
    Step,
    machine_info,
    render_markdown,
    render_table,
    run_bench,
    temp_work,
)
from bench._planning import REFERENCE_SUBSET

__all__ = ["default_groups", "evaluate_targets", "main", "smoke_groups"]

GIB = 1024.0

PREAMBLE = """
Fixed parameters (issue 9): every emulator request takes **20 ms** (`latency`: each answer leaves 20 ms after
its request arrived, the emulator's own processing included, as a real service's response time includes its
processing), the apply stage writes with **concurrency 8** (`superoffice.write_concurrency`: at most 8 write
requests in flight), and the throttled variant limits SuperOffice (the write target) to **25 requests/second**
(`rate_limit_rps`; the rate Microsoft requires SCIM apps to accept). The emulators' timers are millisecond-grained;
each answer is centred on its deadline, and every scenario's notes end with the round trip the bench process measured
against its emulators (the check that 20 ms means 20 ms).
The emulators run in their own process (`python -m bench._emulate`); every scenario runs in a fresh process
(`python -m bench._scenario`), so **peak RSS is that scenario's pipeline process alone**. Stage times of
`pipeline` rows come from the plain stage functions (`scimflow.pipeline`, `scimflow.apply`); rows marked
*flow* ran the real `sync-users` Prefect flow against a local `prefect server` and take each stage's time
as the wall-clock span of its task runs, from the first start to the last end (apply chunks overlap; task
runs counted with `POST /api/task_runs/count`). Requests are the
emulators' `/_emulator/stats` for the run. Apply bound: writes x 20 ms / 8, or SuperOffice requests / 25 per
second when throttled; the ratio is the apply stage's wall time over it. The Entra column is Microsoft's
documented initial-cycle formula (0.01-0.08 min per object; reference/graph.md section 6) for the same
user count: **documented, not measured**.

Tenants are generated (`scimflow.emulators.generate.generate_tenant`) with the default rules
(`rules/default.yaml`). *All creates*: no SuperOffice partner for anyone. *All match*: the same Entra tenant,
with every user already in SuperOffice exactly as the default rules would create it (built from the
planner's own create rows), so its initial sync only links. Nightly runs read Entra by delta (links stored by the
previous run) after `jobTitle` of 1% or 10% of the users was changed through `PATCH /_emulator/users/{id}`.
The SCIM push (issue 17) runs the Graph emulator and an empty SCIM emulator (scim2-server under the strict `rfc`
policy, `write_concurrency` 8, 20 ms) in their own process (`python -m bench._scim serve`), and extract,
`read_scim_state`, validate, `plan_scim`, the plan files and `scimflow.apply.apply_plan` in another
(`python -m bench._scim run`); its bound is the minimal requests (a POST per user and per computed group, a PATCH
per 100 members per group) x 20 ms / 8, and its notes give the SCIM requests per user and the emulator's own time
per request kind (`busy_ms` of its `/_emulator/stats`).
Every apply scenario also puts the plan's own estimate of its apply (`cost.json`, issue 20: the requests the
writer says it will send x the round trip the extract measured / the write concurrency, plus the client's work per
request and 6 round trips) beside the measured apply, in the *Apply est.* column (estimate / measured, `MISS` beyond
±25 %); for *flow* rows the measured span starts at the first chunk task, after Prefect's work before it (the
tenant's apply slot, which an `--approve` run asks for when it starts, and submitting the chunk tasks). The notes compare the requests estimated with those the emulator counted.
The figures are wall times on a shared machine: compare the load average above with the core count.
"""


def default_groups(*, full: bool) -> list[Group]:
    """The scenarios of ``make bench``, cheapest first (a step past the budget is skipped and reported)."""
    prep = "/tmp/scimflow-bench-plan"
    planning = Group(None, steps=(
        Step("prepare", "prepare-plan-inputs", "prepare planning inputs", 100_000, {"folder": prep}, shown=False),
        Step("plan", "plan-100k", "plan only, 20 rules", 100_000, {"folder": prep, "copies": 1}),
        Step("plan-reference", "plan-reference", f"reference planner, {REFERENCE_SUBSET:,}-user subset",
             REFERENCE_SUBSET, {"folder": prep, "subset": REFERENCE_SUBSET}),
        Step("plan", "plan-1m", "plan only, 20 rules", 1_000_000, {"folder": prep, "copies": 10}),
    ))
    groups = [
        planning,
        Group(EmulatorSpec(1_000, "creates"), steps=(
            Step("flow", "init-1k", "initial sync, all creates (flow)", 1_000),)),
        Group(EmulatorSpec(10_000, "creates"), steps=(
            Step("flow", "init-10k", "initial sync, all creates (flow)", 10_000, timeout=600.0),)),
        Group(EmulatorSpec(10_000, "matched"), steps=(
            Step("pipeline", "init-matched-10k", "initial sync, all match", 10_000),
            Step("flow", "nightly-10pct-10k", "nightly, 10% changed (flow)", 10_000, {"mutate": 0.10},
                 incremental=True),
            Step("pipeline", "nightly-1pct-10k-throttled", "nightly, 1% changed, 25 req/s", 10_000,
                 {"mutate": 0.01, "so_settings": {"rate_limit_rps": THROTTLE_RPS}}, incremental=True),
        )),
        Group(EmulatorSpec(100_000, "matched"), steps=(
            Step("pipeline", "init-matched-100k", "initial sync, all match", 100_000),
            Step("pipeline", "nightly-nochange-100k", "nightly, no change", 100_000, incremental=True),
            Step("pipeline", "nightly-1pct-100k", "nightly, 1% changed", 100_000, {"mutate": 0.01},
                 incremental=True),
        )),
        # last: its server (scim2-server) is the slow side, so it must not take the budget of the targets above
        Group(EmulatorSpec(10_000, "creates", target="scim"), steps=(
            Step("scim", "scim-push-10k", "SCIM initial push, all creates (rfc)", 10_000, timeout=300.0),)),
    ]
    if full:
        groups += [
            Group(EmulatorSpec(100_000, "creates"), steps=(
                Step("pipeline", "init-100k", "initial sync, all creates", 100_000, timeout=7200.0),)),
        ]
    return groups


def smoke_groups(users: int = 50) -> list[Group]:
    """A tiny run for the tests: one emulator pair with no latency, one pipeline run."""
    return [Group(EmulatorSpec(users, "creates", latency=0.0), steps=(
        Step("pipeline", "smoke", "initial sync, all creates (smoke)", users, timeout=120.0),))]


def _by_name(results: Sequence[Result]) -> dict[str, Result]:
    return {r.name: r for r in results}


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "met" if ok else "**missed**"


def evaluate_targets(results: Sequence[Result], elapsed_s: float) -> list[tuple[str, str, str]]:
    """(target, what was measured, met / missed / not measured) for each of the issue's targets."""
    r = _by_name(results)
    out: list[tuple[str, str, str]] = []

    flows = [x for x in results if x.task_runs is not None and x.ok]
    counts = sorted({x.task_runs for x in flows if x.task_runs is not None})
    seen = ", ".join(f"{x.users:,} users: {x.task_runs}" for x in flows)
    indep = None if len({x.users for x in flows}) < 2 else len(counts) == 1
    out.append(("task runs per flow run independent of the user count (chunks capped at 10)", seen or "-",
                _verdict(indep)))

    for name, label in (("init-10k", "apply within 1.3x of its bound at 10,000 users (unthrottled): the initial sync"
                                     " of 10,000 creates, 20,000 writes"),
                        ("nightly-1pct-10k-throttled", "apply within 1.3x of its bound at 10,000 users (25 req/s)")):
        x = r.get(name)
        ratio = x.apply_ratio if x is not None and x.ok else None
        what = "-" if x is None else (f"{ratio:.2f}x ({x.title})" if ratio is not None else (x.error or "no bound"))
        out.append((label, what, _verdict(None if ratio is None else ratio <= 1.3)))
    x = r.get("nightly-10pct-10k")
    if x is not None and x.ok and x.apply_ratio is not None and x.apply_bound_s is not None:
        # Reported beside the target, not as it: ~1,100 writes make a 2.8 s bound, next to which the apply's
        # fixed per-run costs (login, reference lists, the first chunk's re-read, the last one's read-back,
        # task starts) weigh a quarter or more; the write-bound scenario above is the one the target measures.
        out.append(("(reported, not an issue target) a nightly run's apply at 10,000 users, 10% changed,"
                    f" {x.apply_writes or 0:,} writes: fixed per-run costs next to a {x.apply_bound_s:.1f} s bound",
                    f"{x.apply_ratio:.2f}x ({x.title})", "within 1.3x" if x.apply_ratio <= 1.3 else "above 1.3x"))

    x = r.get("scim-push-10k")
    label = ("SCIM initial push of 10,000 users at 20 ms, concurrency 8: apply within 1.3x of its bound (a POST per"
             " user and per group, a PATCH per 100 members per group)")
    if x is not None and x.ok and x.apply_ratio is not None:
        rpu = float(x.extra.get("requests_per_user", 0.0))
        out.append((label, f"{x.apply_ratio:.2f}x, {rpu:.2f} requests per user", _verdict(x.apply_ratio <= 1.3)))
    else:
        out.append((label, "-" if x is None else str(x.error), _verdict(None)))

    compared = [x for x in results if x.ok and x.estimate_ratio is not None]
    label = ("the plan's estimated apply duration (cost.json) within ±25% of the measured one in every apply scenario"
             " (issue 20)")
    seen = ", ".join(f"{x.name} {x.estimate_ratio:.2f}{' MISS' if x.estimate_missed else ''}" for x in compared)
    out.append((label, f"estimate / measured: {seen}" if seen else "-",
                _verdict(None if not compared else not any(x.estimate_missed for x in compared))))

    x = r.get("nightly-nochange-100k")
    if x is not None and x.ok and x.total_s is not None:
        ok = (x.graph_requests or 0) <= 5 and x.total_s < 60
        out.append(("no-change nightly run of 100,000 users: a handful of Graph requests, under a minute",
                    f"{x.graph_requests} Graph requests, {x.total_s:.1f} s", _verdict(ok)))
    else:
        out.append(("no-change nightly run of 100,000 users: a handful of Graph requests, under a minute",
                    "-" if x is None else str(x.error), _verdict(None)))

    e2e = [x for x in results if x.users >= 100_000 and x.graph_requests is not None and x.peak_rss_mib]
    if e2e:
        worst = max(e2e, key=lambda x: x.peak_rss_mib or 0.0)
        out.append(("100,000-user end-to-end run under 2 GiB peak RSS",
                    f"{worst.peak_rss_mib or 0:,.0f} MiB max ({worst.title})", _verdict((worst.peak_rss_mib or 0) < 2 * GIB)))

    p100, ref, p1m = r.get("plan-100k"), r.get("plan-reference"), r.get("plan-1m")
    if p100 is not None and p100.ok and p100.total_s is not None:
        out.append(("planning 100,000 x 100,000 users with 20 rules under 2 s",
                    f"{p100.total_s:.2f} s, {p100.peak_rss_mib or 0:,.0f} MiB", _verdict(p100.total_s < 2.0)))
        if ref is not None and ref.ok:
            ratio = float(ref.extra["reference_extrapolated_s"]) / p100.total_s
            out.append(("planner at least 30x faster than the reference planner on the same input",
                        f"{ratio:,.0f}x (reference {ref.extra['reference_s']:.1f} s on {ref.users:,} users, scaled "
                        f"linearly to {ref.extra['reference_extrapolated_s']:,.0f} s)", _verdict(ratio >= 30)))
    if p1m is not None and p1m.ok:
        out.append(("planning 1,000,000 users under 4 GiB peak RSS",
                    f"{p1m.peak_rss_mib or 0:,.0f} MiB, {p1m.total_s or 0:.1f} s", _verdict((p1m.peak_rss_mib or 0) < 4 * GIB)))
    out.append(("`make bench` under 10 minutes, writing bench/results.md itself", f"{elapsed_s:,.0f} s",
                _verdict(elapsed_s < 600)))
    return out


def _annotate(results: list[Result]) -> None:
    """Cross-row notes: the planner's ratio to the reference on the plan-100k row."""
    r = _by_name(results)
    p100, ref = r.get("plan-100k"), r.get("plan-reference")
    if p100 is not None and ref is not None and p100.ok and ref.ok and p100.total_s:
        ext = float(ref.extra["reference_extrapolated_s"])
        p100.notes.append(f"reference planner: {ref.extra['reference_s']:.1f} s on a {ref.users:,}-user subset of this "
                          f"input, scaled linearly to {ext:,.0f} s -> {ext / p100.total_s:,.0f}x faster (linear "
                          "scaling flatters the reference: its matching is quadratic)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for results.md")
    parser.add_argument("--budget", type=float, default=580.0, help="seconds; later steps are skipped past it")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--smoke", action="store_true", help="a 50-user run with no latency (tests)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, plans, emulator files)")
    args = parser.parse_args(argv)

    full = os.environ.get("BENCH_FULL", "") not in ("", "0")
    work = temp_work()
    groups = smoke_groups() if args.smoke else default_groups(full=full)
    groups = [_with_folder(g, work / "plan-inputs") for g in groups]
    if args.only:
        wanted = set(args.only.split(","))
        groups = [Group(g.emulator, tuple(s for s in g.steps if s.name in wanted or not s.shown)) for g in groups]
        groups = [g for g in groups if any(s.shown for s in g.steps)]

    def say(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    say(f"bench: work folder {work}{' (BENCH_FULL)' if full else ''}")
    t0 = time.perf_counter()
    try:
        results = run_bench(groups, work, budget_s=None if args.smoke else args.budget, progress=say)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    _annotate(results)
    targets = [] if args.smoke else evaluate_targets(results, elapsed)
    preamble = "" if args.smoke else PREAMBLE + ("" if full else "\n" + NOT_MEASURED)
    text = render_markdown(results, machine_info(), targets=targets, preamble=preamble, elapsed_s=elapsed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    sys.stdout.write(render_table(results) + "\n")
    for target, what, verdict in targets:
        sys.stdout.write(f"- {target}: {what} -> {verdict}\n")
    sys.stdout.write(f"wrote {args.out / 'results.md'} in {elapsed:,.0f} s\n")
    return 0 if all(r.ok for r in results) else 1


NOT_MEASURED = """
**Not measured by default: the initial sync of 100,000 creates** (run it with `BENCH_FULL=1 make bench`).
At the fixed 20 ms and concurrency 8 its bound alone is 100,000 x 2 writes (a person and a user) x 20 ms / 8
= **500 s**, which does not fit the 10-minute budget next to the other scenarios. The 100,000-user end-to-end
figures (peak RSS included) come from the all-match initial sync and the nightly runs, which extract,
validate, plan, preview and apply over the whole 100,000-user tenant. The throttled 10,000-user figure is a
nightly run with 1% changed: an initial sync of 10,000 creates at 25 requests/s would take 20,000 / 25 = 800 s.
"""


def _with_folder(group: Group, folder: Path) -> Group:
    steps = tuple(
        Step(s.kind, s.name, s.title, s.users, {**s.params, "folder": str(folder)} if "folder" in s.params else s.params,
             s.incremental, s.shown, s.timeout)
        for s in group.steps
    )
    return Group(group.emulator, steps)


if __name__ == "__main__":
    raise SystemExit(main())
