"""Crash safety: the apply SIGKILLed after k SuperOffice writes, rerun until done: no duplicates, nothing lost.

Real child processes (``python -m flows.run --approve``) against the session's Prefect server; the emulator's
latency makes the kills land mid-apply, and ``/_emulator/stats`` says when k writes happened. After the
last rerun, the emulator's snapshot must hold one user per ``UserName`` and every change of the first plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flows.flowkit import start_tenant, stop_tenant
from tests.reliability import harness
from tests.reliability.harness import WIDE, check_snapshot, crash_and_converge, remember

#: Kill points in `make test` (writes counted by the emulator); the soak uses many more.
KILL_POINTS = [4, 15]


@pytest.mark.prefect
@pytest.mark.usefixtures("shared_prefect")
def test_apply_killed_at_several_points_converges_without_duplicates_or_losses(tmp_path: Path) -> None:
    """Two SIGKILLs mid-apply and a final rerun leave one user per UserName and every planned change applied."""
    from scimflow.emulators.generate import generate_tenant

    graph, so = generate_tenant(32, seed=5)
    tenant = start_tenant(tmp_path / "tenant", graph, so, guardrails=WIDE)
    try:
        outcome = crash_and_converge(tenant, KILL_POINTS, latency=0.06, final_in_process=True)
        remember(tenant)
        harness.TEXTS.extend((f"crash run {i}", text) for i, text in enumerate(outcome.outputs))
        assert len(outcome.kills) == len(KILL_POINTS), f"a run ended before its kill point: {outcome.kills}"
        assert len(outcome.planned) > 20
        assert outcome.duplicates == [], f"users created twice: {outcome.duplicates}"
        assert outcome.lost == [], f"planned changes lost: {outcome.lost[:10]}"
    finally:
        stop_tenant(tenant)


def test_snapshot_check_catches_a_duplicate_and_a_lost_change() -> None:
    """The convergence oracle itself fails on a duplicated UserName and on a planned change that is missing."""
    snap = {
        "users": [
            {"AssociateId": 1, "UserName": "a@x.com", "Person": {"Title": "CEO"}},
            {"AssociateId": 2, "UserName": "A@x.com ", "Person": {}},
        ]
    }
    planned = {
        "a@x.com": {"action": "update", "associate_id": 1, "to": {"title": "CTO"}},
        "b@x.com": {"action": "create", "associate_id": None, "to": {"user_name": "b@x.com"}},
    }
    duplicates, lost = check_snapshot(snap, planned)
    assert duplicates == ["a@x.com"]
    assert len(lost) == 2
