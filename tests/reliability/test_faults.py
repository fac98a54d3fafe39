"""Fault matrix: faults on both emulators at once give the clean run's plan exactly, or a clean failure.

One converged tenant (generated, 30 users; small pages so every read pages) behind two socket-level fault
proxies. After convergence, Entra gets one leaver (disabled) and one changed title, so the clean plan has a
legitimate retire and update; every faulty run must plan exactly that, or fail with a connector error that
names the request, or be judged ``source_unhealthy`` (which applies nothing). A retire that the clean plan
does not have would mean a fault was read as "this person left": it fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scimflow.connectors.errors import ConnectorError
from tests.reliability import harness
from tests.reliability.harness import FIGURES, WIDE, Fault, Rig, converge, retire_keys, rig

GRAPH_USERS = r"^GET /v1\.0/users\?"
GRAPH_USERS_NEXT = r"^GET /v1\.0/users\?.*skiptoken"
GRAPH_MEMBERS = r"^GET /v1\.0/groups/[^/]+/transitiveMembers"
SO_USERS = r"^GET /Cust12345/api/v1/User\?"
SO_USERS_NEXT = r"^GET /Cust12345/api/v1/User\?.*skip=[1-9]"
SO_PERSONS = r"^GET /Cust12345/api/v1/Person\?"
TIMEOUT = 1.0


@dataclass
class Baseline:
    rig: Rig
    rows: list[dict[str, Any]]
    tmp: Path
    n: list[int] = field(default_factory=lambda: [0])

    def out(self) -> Path:
        self.n[0] += 1
        return self.tmp / f"plan-{self.n[0]}"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    """A converged 30-user tenant behind fault proxies, then one leaver and one changed title in Entra."""
    from scimflow.emulators.generate import generate_tenant

    tmp = tmp_path_factory.mktemp("faults")
    graph, so = generate_tenant(30, seed=11)
    with rig(tmp / "tenant", graph, so, guardrails=harness.REAL, page_size=5, so_page=8, timeout=TIMEOUT) as r:
        converge(_wide(r), tmp / "converge")
        users = [u for u in r.host.graph.snapshot()["users"] if u.get("accountEnabled")]
        r.graph_admin("PATCH", f"/_emulator/users/{users[0]['id']}", json={"accountEnabled": False})
        r.graph_admin("PATCH", f"/_emulator/users/{users[1]['id']}", json={"jobTitle": "Chief Reliability Officer"})
        rows, verdict = r.plan(tmp / "clean")
        assert verdict == "ok"
        assert {"retire", "update"} <= {row["action"] for row in rows}, rows
        yield Baseline(r, rows, tmp)


def _wide(r: Rig) -> Path:
    """The rig's config with wide guardrails (convergence applies the whole first plan)."""
    import yaml

    data = yaml.safe_load(r.config.read_text())
    data["guardrails"] = WIDE
    path = r.folder / "wide.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Scenario:
    graph: list[Fault] = field(default_factory=list)
    so: list[Fault] = field(default_factory=list)
    graph_knobs: dict[str, Any] = field(default_factory=dict)
    so_knobs: dict[str, Any] = field(default_factory=dict)
    call: Callable[[Rig], tuple[list[Fault], list[Fault]]] | None = None
    expect: str = "exact"  # exact | exact_or_clean | clean | unhealthy


SCENARIOS: dict[str, Scenario] = {
    "429-storm-with-retry-after": Scenario(
        graph_knobs={"throttle_next": 5, "retry_after": "1"},
        so=[Fault("status", SO_USERS, status=429, retry_after="1", times=4)],
    ),
    "5xx-burst": Scenario(
        graph=[Fault("status", GRAPH_USERS_NEXT, skip=1, status=503, times=3)],
        so=[Fault("status", SO_PERSONS, status=502, times=2), Fault("status", SO_USERS_NEXT, status=500, times=2)],
    ),
    "5xx-from-emulator-knobs": Scenario(
        graph_knobs={"error_rate": 0.15, "seed": 7}, so_knobs={"error_rate": 0.1, "seed": 7}
    ),
    "timeout-few-requests": Scenario(
        graph=[Fault("stall", GRAPH_USERS_NEXT, skip=1, seconds=TIMEOUT + 1)],
        so=[Fault("stall", SO_USERS_NEXT, seconds=TIMEOUT + 1)],
    ),
    "dropped-connection-mid-response": Scenario(
        graph=[Fault("drop", GRAPH_USERS_NEXT, skip=1, times=2), Fault("drop", GRAPH_MEMBERS, skip=2)],
        so=[Fault("drop", SO_USERS_NEXT), Fault("drop", SO_PERSONS)],
    ),
    "connection-reset-before-answer": Scenario(
        graph=[Fault("reset", GRAPH_USERS_NEXT, skip=2)], so=[Fault("reset", SO_USERS, skip=1)]
    ),
    "token-and-ticket-expiry-mid-run": Scenario(
        call=lambda r: (
            [Fault("call", GRAPH_USERS_NEXT, skip=2, action=r.host.graph.revoke_tokens)],
            [Fault("call", SO_USERS_NEXT, skip=1, action=r.host.superoffice.expire_tickets)],
        )
    ),
    "truncated-graph-page": Scenario(graph=[Fault("truncate", GRAPH_USERS_NEXT, skip=1)], expect="exact_or_clean"),
    "truncated-superoffice-page": Scenario(so=[Fault("truncate", SO_USERS_NEXT)], expect="exact_or_clean"),
    "error-mid-paging-persistent": Scenario(
        graph=[Fault("status", GRAPH_USERS_NEXT, skip=2, status=503, times=10_000)],
        so=[Fault("status", SO_USERS_NEXT, status=500, times=10_000)],
        expect="clean",
    ),
    "latency-beyond-timeout-persistent": Scenario(
        graph=[Fault("stall", GRAPH_USERS_NEXT, skip=1, seconds=TIMEOUT + 0.3, times=10_000)], expect="clean"
    ),
    "graph-page-lost-mid-paging": Scenario(graph=[Fault("empty_last", GRAPH_USERS_NEXT, skip=0)], expect="unhealthy"),
}


@pytest.mark.parametrize("name", list(SCENARIOS), ids=list(SCENARIOS))
def test_fault_gives_exact_plan_or_clean_failure(baseline: Baseline, name: str) -> None:
    """Under each fault (both emulators at once) the plan equals the clean plan, or the run fails cleanly."""
    sc = SCENARIOS[name]
    r = baseline.rig
    graph_faults, so_faults = sc.call(r) if sc.call else (sc.graph, sc.so)
    r.faults(graph_faults, so_faults)
    writes = r.so_stats()["writes"]
    before = r.injected() + _knob_faults(r)
    if sc.graph_knobs:
        r.graph_knobs(**sc.graph_knobs)
    if sc.so_knobs:
        r.so_knobs(**sc.so_knobs)
    out = baseline.out()
    rows: list[dict[str, Any]] | None = None
    verdict = None
    error: BaseException | None = None
    try:
        rows, verdict = r.plan(out)
    except Exception as exc:
        error = exc
        harness.TEXTS.append((f"fault {name}", _describe(exc)))
    finally:
        r.faults()
        r.graph_knobs(throttle_next=0, error_rate=0.0, seed=None)
        r.so_knobs(error_rate=0.0, latency=0.0)
    injected = r.injected() + _knob_faults(r) - before
    FIGURES["scenarios"] += 1
    FIGURES["faults_injected"] += _knob_faults_only(sc, injected)
    assert injected > 0, "the fault never landed: the scenario proves nothing"
    assert r.so_stats()["writes"] == writes, "planning under a fault wrote to SuperOffice"

    if error is not None:
        assert sc.expect in ("exact_or_clean", "clean"), f"{name}: failed instead of planning exactly: {error!r}"
        assert isinstance(error, ConnectorError), f"not a clean connector error: {type(error).__name__}: {error}"
        assert "https://127.0.0.1:" in str(error) and ("GET" in str(error) or "POST" in str(error)), str(error)
        assert not (out / "plan.jsonl").exists(), "a failed extract still wrote a plan"
        return
    assert rows is not None
    if sc.expect == "unhealthy":
        assert verdict == "source_unhealthy", f"a lost page was planned as a healthy source: {verdict}"
        return
    assert sc.expect != "clean", f"{name}: a persistent fault still produced a plan"
    assert retire_keys(rows) <= retire_keys(baseline.rows), "a fault turned into retirements"
    assert rows == baseline.rows


def _knob_faults(r: Rig) -> int:
    g, s = r.graph_stats(), r.so_stats()
    return int(g.get("throttled", 0)) + int(g.get("errors", 0)) + int(s.get("throttled", 0)) + int(s.get("errors", 0))


def _knob_faults_only(sc: Scenario, injected: int) -> int:
    """Faults the emulators injected (the proxies' are counted when the rig stops)."""
    return injected if (sc.graph_knobs or sc.so_knobs) and not (sc.graph or sc.so) else 0


def _describe(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


def test_wrong_filter_that_matches_nobody_retires_nobody(baseline: Baseline, tmp_path: Path) -> None:
    """A rule set whose only rule matches nobody plans everyone out of scope, but the retire budget holds it."""
    rules = tmp_path / "nobody.yaml"
    rules.write_text(
        "version: 1\nmatch: [entra_id, user_name]\nmapping:\n  user_name: userPrincipalName\n"
        "deprovision: retire\nrules:\n  - name: Typo\n    when: {expr: \"country = 'XX'\"}\n"
        "    set: {role: User}\n"
    )
    from scimflow.config import load_config
    from scimflow.pipeline import run_plan_stages

    outcome, _, _ = run_plan_stages(load_config(baseline.rig.config), rules=rules, out=tmp_path / "plan", full=True)
    FIGURES["scenarios"] += 1
    assert outcome.summary["retire"] > 5, "the wrong filter did not put everyone out of scope"
    assert outcome.verdict_name == "over_budget" and "retire" in outcome.held_classes
