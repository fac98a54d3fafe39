"""``make soak``: random faults and SIGKILLs for a bounded time; one summary line, non-zero on a loss.

    python -m tests.reliability.soak --seconds 300

Each round starts a fresh generated tenant (seed = round) behind the fault proxies, with the contract's
retire budget. A round is either a *fault* round (a random mix of the fault matrix on both emulators at
once, in-process plan, compared with the clean plan: exact, a clean connector error, or a source judged
unhealthy) or a *crash* round (a real ``python -m flows.run --approve`` child SIGKILLed after k writes,
for 2-4 random k, then rerun until done, the snapshot checked for duplicates and lost changes). The run
stops starting rounds when ``--seconds`` are spent and ends with exactly one line::

    soak: scenarios N, faults injected N, crashes N, duplicates 0, lost 0

The exit status is 1 when duplicates or lost is not 0, or a fault was planned wrongly.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.prefect_server import configure_environment

configure_environment()

from tests.reliability import harness  # noqa: E402
from tests.reliability.harness import FIGURES, REAL, WIDE, Fault, converge, crash_and_converge, retire_keys, rig  # noqa: E402

GRAPH_NEXT = r"^GET /v1\.0/users\?.*skiptoken"
SO_NEXT = r"^GET /Cust12345/api/v1/User\?.*skip=[1-9]"
SO_PERSONS = r"^GET /Cust12345/api/v1/Person\?"
TIMEOUT = 1.0


def _random_faults(rng: random.Random, r: harness.Rig) -> tuple[list[Fault], list[Fault]]:
    kinds = ["status503", "status429", "drop", "reset", "stall", "expiry"]
    graph: list[Fault] = []
    so: list[Fault] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(kinds)
        side, pattern = rng.choice([("g", GRAPH_NEXT), ("s", SO_NEXT), ("s", SO_PERSONS)])
        skip, times = rng.randint(0, 2), rng.randint(1, 3)
        if kind == "status503":
            f = Fault("status", pattern, skip=skip, times=times, status=rng.choice([500, 502, 503, 504]))
        elif kind == "status429":
            f = Fault("status", pattern, skip=skip, times=times, status=429, retry_after=rng.choice(["0", "1", "0.5"]))
        elif kind == "stall":
            f = Fault("stall", pattern, skip=skip, times=1, seconds=TIMEOUT + 0.5)
        elif kind == "expiry":
            act = r.host.graph.revoke_tokens if side == "g" else r.host.superoffice.expire_tickets
            f = Fault("call", pattern, skip=skip, times=1, action=act)
        else:
            f = Fault(kind, pattern, skip=skip, times=times)
        (graph if side == "g" else so).append(f)
    return graph, so


def fault_round(seed: int, folder: Path) -> tuple[int, list[str]]:
    """A converged tenant, one leaver; a few random fault mixes; the problems found."""
    from scimflow.connectors.errors import ConnectorError
    from scimflow.emulators.generate import generate_tenant

    rng = random.Random(seed)
    problems: list[str] = []
    graph, so = generate_tenant(rng.randint(15, 30), seed=seed)
    scenarios = 0
    with rig(
        folder, graph, so, guardrails=REAL, page_size=rng.randint(3, 8), so_page=rng.randint(5, 12), timeout=TIMEOUT
    ) as r:
        wide = r.folder / "wide.yaml"
        wide.write_text(r.config.read_text().replace("max_retire: 5%", "max_retire: 100%"))
        converge(wide, folder / "converge")
        users = [u for u in r.host.graph.snapshot()["users"] if u.get("accountEnabled")]
        r.graph_admin("PATCH", f"/_emulator/users/{users[0]['id']}", json={"accountEnabled": False})
        clean, _ = r.plan(folder / "clean")
        for i in range(rng.randint(2, 4)):
            g, s = _random_faults(rng, r)
            r.faults(g, s)
            before = r.injected()
            writes = r.so_stats()["writes"]
            try:
                rows, verdict = r.plan(folder / f"p{i}")
            except ConnectorError:
                rows, verdict = None, "failed"
            except Exception as exc:
                problems.append(f"seed {seed}: crashed: {type(exc).__name__}: {exc}")
                rows, verdict = None, "crashed"
            finally:
                r.faults()
            scenarios += 1
            if r.so_stats()["writes"] != writes:
                problems.append(f"seed {seed}: planning wrote to SuperOffice")
            if rows is not None and verdict != "source_unhealthy":
                if retire_keys(rows) - retire_keys(clean):
                    problems.append(f"seed {seed}: a fault caused retirements {retire_keys(rows) - retire_keys(clean)}")
                elif rows != clean:
                    problems.append(f"seed {seed}: plan differs from the clean plan under {g + s}")
            if r.injected() == before:
                scenarios -= 1  # the mix never landed (e.g. skip beyond the pages): not counted
    return scenarios, problems


def crash_round(seed: int, folder: Path) -> int:
    """A fresh tenant; the apply killed at 2-4 random write counts, then converged; the kills that landed."""
    from scimflow.emulators.generate import generate_tenant
    from tests.flows.flowkit import start_tenant, stop_tenant

    rng = random.Random(seed)
    graph, so = generate_tenant(rng.randint(30, 60), seed=seed)
    tenant = start_tenant(folder, graph, so, guardrails=WIDE)
    try:
        points = sorted(rng.sample(range(2, 40), rng.randint(2, 4)))
        outcome = crash_and_converge(tenant, points, latency=rng.choice([0.03, 0.06, 0.1]))
        return len(outcome.kills)
    finally:
        stop_tenant(tenant)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0, help="stop starting rounds after this many seconds")
    p.add_argument("--seed", type=int, default=None, help="first round's seed (default: from the clock)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import stamina

    stamina.set_testing(True, attempts=8)  # retries still happen, without the waits
    from scimflow.commands.sync_cmd import LocalPrefectServer
    from tests import prefect_server as ps

    deadline = time.monotonic() + args.seconds
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    work = Path(tempfile.mkdtemp(prefix="scimflow-soak-"))
    problems: list[str] = []
    server = LocalPrefectServer.start(ps._HOME, ui=False, port=ps._PORT, auth=False)
    try:
        server.wait_healthy(180)
        n = 0
        while time.monotonic() < deadline or n < 2:
            n += 1
            folder = work / f"round-{n}"
            try:
                if n % 2:
                    found, issues = fault_round(seed + n, folder)
                    FIGURES["scenarios"] += found
                    problems += issues
                else:
                    crash_round(seed + n, folder)
                    FIGURES["scenarios"] += 1
            except AssertionError as exc:
                problems.append(f"round {n} (seed {seed + n}): {exc}"[:500])
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for problem in problems:
        print(f"soak problem: {problem}", file=sys.stderr)
    dup, lost = FIGURES["duplicates"], FIGURES["changes_lost"]
    print(
        f"soak: scenarios {FIGURES['scenarios']}, faults injected {FIGURES['faults_injected']}, "
        f"crashes {FIGURES['crashes_survived']}, duplicates {dup}, lost {lost}"
    )
    return 1 if dup or lost or problems else 0


if __name__ == "__main__":
    sys.exit(main())
