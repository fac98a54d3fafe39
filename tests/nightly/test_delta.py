"""The nightly run reads Entra through Graph delta: a quiet night costs a handful of delta requests."""

from __future__ import annotations

import pytest

from tests.flows.flowkit import params, run_flow

from .nightkit import WIDE, graph, graph_stats

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_api")]


def _reset(tenant) -> None:
    with graph(tenant) as g:
        g.post("/_emulator/reset-counters").raise_for_status()


def test_a_quiet_night_reads_only_deltas_and_a_change_arrives_by_delta(tenant_factory):
    """After a full first night, a night with no change makes only delta rounds (no /users read); an edit comes in by delta."""
    t = tenant_factory(guardrails=WIDE)
    first = run_flow(params(t, mode="auto"))
    assert first.status == "applied"
    first_reads = graph_stats(t)
    assert first_reads["graph_requests"] > first_reads["delta_requests"], "the first night reads the whole tenant"

    _reset(t)
    quiet = run_flow(params(t, mode="auto"))
    assert (quiet.status, quiet.exit_code) == ("nothing_to_do", 0)
    stats = graph_stats(t)
    assert stats["graph_requests"] == stats["delta_requests"], f"a non-delta Graph read on a quiet night: {stats}"
    assert stats["delta_requests"] in range(1, 5), stats

    with graph(t) as g:
        (ola,) = [u for u in g.get("/_emulator/snapshot").json()["users"] if u["userPrincipalName"].startswith("Ola.")]
        g.patch(f"/_emulator/users/{ola['id']}", json={"jobTitle": "Head of Sales"}).raise_for_status()
    _reset(t)
    changed = run_flow(params(t, mode="auto"))
    assert (changed.status, changed.counts["update"], changed.report.applied) == ("applied", 1, 1)
    stats = graph_stats(t)
    assert stats["graph_requests"] == stats["delta_requests"] <= 4, stats
    (user,) = t.users_by_name()["ola.hansen@contoso.com"]
    assert user["Person"]["Title"] == "Head of Sales"
