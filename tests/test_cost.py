"""The cost of a plan: the requests the writers say an apply sends are the ones it sends (counted by the
emulators), the round trip is measured during the extract, and the estimate is written, read and shown."""

from __future__ import annotations

import json
import re
import ssl
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow import pipeline
from scimflow.apply import apply_plan
from scimflow.config import load_config
from scimflow.plan._cost import (
    CHUNK_ROUNDS,
    COST_FILE,
    FIXED_ROUNDS,
    RoundTrips,
    cost_lines,
    cost_text,
    cpu_stretch,
    estimate,
    read_cost,
)
from tests.flows.flowkit import Tenant, worked_example_tenant


def _stats(origin: str, ca: Path) -> dict[str, Any]:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=30) as c:
        return dict(c.get(f"{origin}/_emulator/stats").json())


def _so_endpoints(after: dict[str, Any], before: dict[str, Any]) -> Counter[str]:
    """The SuperOffice emulator's per-endpoint counts between two stats, labelled as the writer labels them."""
    out: Counter[str] = Counter()
    for label, n in (after.get("endpoints") or {}).items():
        d = int(n) - int((before.get("endpoints") or {}).get(label, 0))
        if not d:
            continue
        method, path = label.split(" ", 1)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", path).lstrip("/")
        path = re.sub(r"\{\w+\}", "{id}", path) if not path.startswith("MDOList") else path
        out[f"{method} {path if path.startswith('login/') else 'api/v1/' + path}"] += d
    return out


def _plan_and_apply(tenant: Tenant, out: Path) -> tuple[pipeline.PlanOutcome, Counter[str]]:
    config = load_config(tenant.config)
    origin, ca = tenant.host.superoffice_origin, tenant.host.ca_bundle
    outcome, _, _ = pipeline.run_plan_stages(config, out=out)
    before = _stats(origin, ca)
    with pipeline.open_store(config) as store:
        report = apply_plan(config, store, out, outcome.plan_hash, matched_pairs=outcome.plan.matched_pairs)
    assert report.failed == 0 and report.drifted == 0
    return outcome, _so_endpoints(_stats(origin, ca), before)


def test_worked_example_requests_are_the_ones_sent(tmp_path: Path) -> None:
    """The SuperOffice writer's count of the worked example's apply equals the emulator's count, endpoint by endpoint."""
    with worked_example_tenant(tmp_path / "t") as tenant:
        outcome, sent = _plan_and_apply(tenant, tmp_path / "plan")
    assert outcome.cost is not None
    assert outcome.cost.requests == dict(sent)
    assert outcome.cost.rows == outcome.change_rows


def test_cost_file_is_written_private_and_read_back(tmp_path: Path) -> None:
    """cost.json sits beside the plan files, owner-only, and reads back to the outcome's figure."""
    with worked_example_tenant(tmp_path / "t") as tenant:
        config = load_config(tenant.config)
        outcome, _, _ = pipeline.run_plan_stages(config, out=tmp_path / "plan")
    path = tmp_path / "plan" / COST_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_cost(tmp_path / "plan") == outcome.cost
    assert outcome.cost is not None and outcome.cost.rtt_ms is not None and outcome.cost.rtt_ms > 0
    assert "plan_hash" not in json.loads(path.read_text())  # not summary.json: the contract's keys stay as they are


def test_round_trips_median_of_reads_and_throttling(tmp_path: Path) -> None:
    """RoundTrips times GETs only, prefers small answers, and records 429s with their Retry-After and the pace."""
    answers = iter([200, 200, 429, 200, 200, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        code = next(answers)
        if code == 429:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(200, content=b"x" * (100_000 if request.url.path == "/big" else 10))

    trips = RoundTrips()
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        trips.attach(client)
        client.get("https://t.example/big")
        client.post("https://t.example/b")
        for _ in range(4):
            client.get("https://t.example/c")
        client.get("https://t.example/big")
    timing = trips.timing()
    assert timing.reads == 5  # the POST and the 429 are not round trips of a read
    assert timing.small_reads == 3  # the two 100 kB answers are not samples of the round trip
    assert timing.throttled == 1 and timing.retry_after_s == 2.0
    assert timing.rtt_ms is not None and timing.rtt_ms >= 0
    assert timing.rate_rps is not None and timing.rate_rps > 0


def test_estimate_model() -> None:
    """requests x (rtt / concurrency + client work) plus the fixed round trips; a throttled pace wins when slower."""
    cost = estimate({"POST a": 800, "PATCH b": 0}, rtt_ms=20.0, concurrency=8, client_ms=0.5)
    assert cost.requests == {"POST a": 800}
    assert cost.estimated_seconds == pytest.approx((100 + FIXED_ROUNDS) * 0.02 + 800 * 0.0005)
    loaded = estimate({"POST a": 800}, rtt_ms=20.0, concurrency=8, client_ms=0.5, stretch=3.0)
    assert loaded.estimated_seconds == pytest.approx((100 + FIXED_ROUNDS) * 0.02 + 800 * 0.0015)
    assert cpu_stretch() >= 1.0
    chunked = estimate({"POST a": 800}, rtt_ms=20.0, concurrency=8, client_ms=0.5, chunks=10)
    assert chunked.estimated_seconds == pytest.approx((100 + FIXED_ROUNDS + 10 * CHUNK_ROUNDS) * 0.02 + 800 * 0.0005)
    slow = estimate({"POST a": 800}, rtt_ms=20.0, concurrency=8, rate_limit_rps=25.0)
    assert slow.estimated_seconds == pytest.approx(32.0)
    assert estimate({}, rtt_ms=20.0, concurrency=8).estimated_seconds == 0.0
    assert estimate({"POST a": 1}, rtt_ms=None, concurrency=8).estimated_seconds is None


def test_cost_lines_and_text(tmp_path: Path) -> None:
    """The preview's section lists each endpoint and the figure; no cost.json, no section."""
    assert cost_lines(tmp_path) == []
    from scimflow.plan._cost import write_cost

    cost = estimate({"POST api/v1/User": 10, "PATCH api/v1/User/{id}": 5}, rtt_ms=21.0, concurrency=8)
    write_cost(tmp_path, cost)
    text = "\n".join(cost_lines(tmp_path))
    assert "| 10 | `POST api/v1/User` |" in text and "| 5 | `PATCH api/v1/User/{id}` |" in text
    assert "15 requests" in cost_text(cost) and "8 in flight" in cost_text(cost)


@pytest.mark.parametrize("dialect", ["entra", "rfc"])
def test_scim_worked_example_requests_are_the_ones_sent(tmp_path: Path, dialect: str) -> None:
    """The SCIM writer's count equals the SCIM emulator's, endpoint by endpoint, in both dialects: for the worked
    example's push (users, computed groups, memberships), then for a night with an update that moves a user
    between computed groups and a retirement; the round trip is the whole answer's (the latency comes with the
    body)."""
    from scimflow.connectors.graph import clear_app_cache
    from scimflow.emulators.host import EmulatorHost
    from tests.flows.flowkit import FIXTURES, WIDE

    graph = json.loads((FIXTURES / "graph.json").read_text())
    host = EmulatorHost(
        graph,
        {},
        tmp_path / "t",
        rules=FIXTURES / "rules.yaml",
        guardrails=WIDE,
        target="scim",
        scim_dialect=dialect,
        scim_settings={"latency": 0.03},  # sent with the body: the headers leave at once
    )
    host.start()
    rounds = []
    try:
        config = load_config(host.config_path)
        for night in ("push", "changes"):
            if night == "changes":
                ctx = ssl.create_default_context(cafile=str(host.ca_bundle))
                with httpx.Client(base_url=host.graph_origin, verify=ctx, timeout=30) as c:
                    c.patch(f"/_emulator/users/{graph['users'][0]['id']}", json={"jobTitle": "Sales Rep"})
                    c.patch(f"/_emulator/users/{graph['users'][1]['id']}", json={"accountEnabled": False})
            outcome, _, _ = pipeline.run_plan_stages(config, out=tmp_path / night)
            before = _stats(host.target_origin, host.ca_bundle)
            with pipeline.open_store(config) as store:
                report = apply_plan(config, store, tmp_path / night, outcome.plan_hash)
            after = _stats(host.target_origin, host.ca_bundle)
            sent = {k: int(v) - int(before["endpoints"].get(k, 0)) for k, v in after["endpoints"].items()}
            rounds.append((outcome, report, {k: v for k, v in sent.items() if v}))
    finally:
        clear_app_cache()
        host.stop()
    for outcome, report, sent in rounds:
        assert report.failed == 0 and report.drifted == 0 and report.applied > 0
        assert outcome.cost is not None
        assert outcome.cost.requests == sent
    assert all(o.cost is not None and (o.cost.rtt_ms or 0) >= 30 for o, _, _ in rounds)  # the whole answer timed
    changed = rounds[1][0].cost
    assert changed is not None and changed.requests.get("PATCH /Groups/{id}", 0) >= 2  # out of one group, into another


def test_plan_summary_prints_the_cost(tmp_path: Path) -> None:
    """`scimflow plan`'s summary ends with the apply's cost: requests, duration, one line per endpoint."""
    import io

    from rich.console import Console

    from scimflow.commands.plan_live import print_plan_summary
    from scimflow.plan import write_cost

    write_cost(tmp_path, estimate({"POST api/v1/User": 2, "PATCH api/v1/Person/{id}": 1}, rtt_ms=20, concurrency=8))
    buf = io.StringIO()
    print_plan_summary(
        {"plan_hash": "ab" * 32, "guardrails": {"verdict": "ok"}}, tmp_path, Console(file=buf, width=120)
    )
    lines = buf.getvalue().splitlines()
    assert any(line.startswith("apply cost: 3 requests, about ") for line in lines)
    assert "  2  POST api/v1/User" in lines and "  1  PATCH api/v1/Person/{id}" in lines
