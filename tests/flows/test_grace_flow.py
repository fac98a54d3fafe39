"""Grace-period deprovisioning end to end: the worked example on the emulators (HTTPS), planned by the pipeline at
times the test chooses, applied by the apply engine through the SuperOffice writer, kept in a real SQLite store."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
from flowkit import FIXTURES, Tenant

from scimflow import pipeline
from scimflow.apply import apply_plan
from scimflow.config import load_config
from scimflow.plan._grace import read_pending

SARA = "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"  # disabled in the worked example
SARA_KEY = "sara.lind@contoso.com"
DAY0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
MAKE_RETIRED = "POST Agents/User/MakeRetired"  # the emulator's label of the one retire request


def _grace_rules(folder: Path) -> Path:
    path = folder / "grace-rules.yaml"
    text = (FIXTURES / "rules.yaml").read_text()
    path.write_text(text.replace("deprovision: retire\n", "deprovision: {action: retire, after: 7d}\n"))
    return path


def _plan(tenant: Tenant, rules: Path, out: Path, now: dt.datetime) -> pipeline.PlanOutcome:
    """``scimflow plan``'s stages at ``now`` (each run opens the store afresh, as a new process would)."""
    outcome, _, _ = pipeline.run_plan_stages(load_config(tenant.config), rules=rules, out=out, full=True, now=now)
    return outcome


def _apply(tenant: Tenant, outcome: pipeline.PlanOutcome, **kw: Any) -> Any:
    config = load_config(tenant.config)
    with pipeline.open_store(config) as store:
        return apply_plan(config, store, outcome.out, outcome.plan_hash, matched_pairs=outcome.plan.matched_pairs, **kw)


def _pending_keys(tenant: Tenant) -> list[str]:
    with pipeline.open_store(load_config(tenant.config)) as store:
        return store.pending_retirements().get_column("key").to_list()


def _sara_retired(tenant: Tenant) -> bool:
    (sara,) = tenant.users_by_name()[SARA_KEY]
    return bool(sara["Deleted"])


def _plan_rows(outcome: pipeline.PlanOutcome) -> dict[str, dict[str, Any]]:
    lines = (outcome.out / "plan.jsonl").read_text().splitlines()
    return {r["key"]: r for r in (json.loads(line) for line in lines)}


def test_leaver_waits_out_the_grace_period_then_is_retired(worked_example: Tenant, tmp_path: Path) -> None:
    """Day 0: pending, not retired by the apply; no apply until day 8 (a crash in between loses nothing);
    day 8: an ordinary retire row; held by the approver it stays pending, applied it is one MakeRetired and the
    entry is gone."""
    rules = _grace_rules(tmp_path)
    day0 = _plan(worked_example, rules, tmp_path / "day0", DAY0)
    assert day0.summary["pending_retire"] == 1 and day0.summary["retire"] == 0
    assert SARA_KEY not in _plan_rows(day0)
    assert [(p["key"], p["due"]) for p in read_pending(day0.out)] == [(SARA_KEY, "2026-12-08T00:00:00Z")]
    report = _apply(worked_example, day0)
    assert report.failed == 0 and report.applied == 3  # two creates and an update; Sara untouched
    assert not _sara_retired(worked_example)
    assert _pending_keys(worked_example) == [SARA_KEY]

    day5 = _plan(worked_example, rules, tmp_path / "day5", DAY0 + dt.timedelta(days=5))
    assert day5.summary["pending_retire"] == 1 and day5.row_count == 0  # planned, never applied: "crashed"

    day8 = _plan(worked_example, rules, tmp_path / "day8", DAY0 + dt.timedelta(days=8))
    row = _plan_rows(day8)[SARA_KEY]
    assert row["action"] == "retire" and "grace period (7d) ended 2026-12-08" in row["reason"]
    assert day8.verdict_name == "ok"
    worked_example.so_reset_counters()
    held = _apply(worked_example, day8, hold_actions=["retire"])  # an approver holds retirements this time
    assert held.held == 1 and held.applied == 0
    assert _pending_keys(worked_example) == [SARA_KEY] and not _sara_retired(worked_example)
    report = _apply(worked_example, day8)
    assert report.failed == 0 and report.applied == 1
    assert _sara_retired(worked_example)
    assert worked_example.so_stats()["endpoints"].get(MAKE_RETIRED) == 1
    assert _pending_keys(worked_example) == []


def test_returner_is_cancelled_and_never_retired(worked_example: Tenant, tmp_path: Path) -> None:
    """Sara is enabled again in Entra on day 2: the entry is cancelled and no MakeRetired is ever sent."""
    rules = _grace_rules(tmp_path)
    _apply(worked_example, _plan(worked_example, rules, tmp_path / "day0", DAY0))
    assert _pending_keys(worked_example) == [SARA_KEY]
    ctx = ssl.create_default_context(cafile=str(worked_example.host.ca_bundle))
    with httpx.Client(base_url=worked_example.host.graph_origin, verify=ctx, timeout=30) as graph:
        graph.patch(f"/_emulator/users/{SARA}", json={"accountEnabled": True}).raise_for_status()
    worked_example.so_reset_counters()
    day2 = _plan(worked_example, rules, tmp_path / "day2", DAY0 + dt.timedelta(days=2))
    assert day2.summary["pending_retire"] == 0
    assert _plan_rows(day2).get(SARA_KEY, {}).get("action") != "retire"
    assert _pending_keys(worked_example) == []
    _apply(worked_example, day2)
    day9 = _plan(worked_example, rules, tmp_path / "day9", DAY0 + dt.timedelta(days=9))
    assert SARA_KEY not in _plan_rows(day9)
    assert MAKE_RETIRED not in worked_example.so_stats()["endpoints"]
    assert not _sara_retired(worked_example)


def test_scim_target_leaver_is_deactivated_only_after_the_grace_period(tmp_path: Path) -> None:
    """A SCIM target (rfc dialect): Sara, pushed while enabled, is disabled; pending for 7 days, then deactivated."""
    from scimflow.connectors.graph import clear_app_cache
    from scimflow.emulators.host import EmulatorHost

    graph = json.loads((FIXTURES / "graph.json").read_text())
    for user in graph["users"]:
        if user["id"] == SARA:
            user["accountEnabled"] = True
    wide = {"max_retire": "100%", "max_changes": 500, "min_source_users": 1}
    host = EmulatorHost(
        graph, {}, tmp_path / "site", rules=FIXTURES / "rules.yaml", guardrails=wide, target="scim", scim_dialect="rfc"
    ).start()
    try:
        config = load_config(host.config_path)
        rules = _grace_rules(tmp_path)
        ctx = ssl.create_default_context(cafile=str(host.ca_bundle))

        def plan(name: str, now: dt.datetime) -> pipeline.PlanOutcome:
            outcome, _, _ = pipeline.run_plan_stages(config, rules=rules, out=tmp_path / name, full=True, now=now)
            return outcome

        def apply(outcome: pipeline.PlanOutcome) -> Any:
            with pipeline.open_store(config) as store:
                return apply_plan(
                    config, store, outcome.out, outcome.plan_hash, matched_pairs=outcome.plan.matched_pairs
                )

        def sara_active() -> bool:
            with httpx.Client(base_url=host.target_origin, verify=ctx, timeout=30) as c:
                users = c.get("/_emulator/snapshot").json()["users"]
            (sara,) = [u for u in users if u["userName"].lower() == SARA_KEY]
            return bool(sara.get("active", True))

        assert apply(plan("push", DAY0 - dt.timedelta(days=1))).failed == 0
        assert sara_active()
        with httpx.Client(base_url=host.graph_origin, verify=ctx, timeout=30) as g:
            g.patch(f"/_emulator/users/{SARA}", json={"accountEnabled": False}).raise_for_status()
        day0 = plan("day0", DAY0)
        assert day0.row_count == 0 and day0.summary["pending_retire"] == 1
        (entry,) = read_pending(day0.out)
        assert entry["key"] == SARA_KEY and entry["due"] == "2026-12-08T00:00:00Z"
        assert isinstance(entry["associate_id"], str)  # the SCIM id
        day8 = plan("day8", DAY0 + dt.timedelta(days=7))
        row = _plan_rows(day8)[SARA_KEY]
        assert row["action"] == "retire" and row["changes"] == {"active": {"from": True, "to": False}}
        assert row["associate_id"] == entry["associate_id"]
        report = apply(day8)
        assert report.failed == 0 and report.applied == 1
        assert not sara_active()
        with pipeline.open_store(config) as store:
            assert store.pending_retirements().is_empty()
    finally:
        clear_app_cache()
        host.stop()


def test_explain_records_nothing(worked_example: Tenant, tmp_path: Path, capsys: Any) -> None:
    """`scimflow explain` leaves the store as it was (no grace clock starts); `scimflow plan` records the leaver
    and says how many users wait for their date."""
    from scimflow.commands.plan_live import run_explain, run_plan

    rules = _grace_rules(tmp_path)
    assert run_explain(worked_example.config, rules, SARA_KEY) in (0, 1)
    assert _pending_keys(worked_example) == []
    capsys.readouterr()
    assert run_plan(worked_example.config, rules, tmp_path / "plan", full=True) in (0, 2)
    assert _pending_keys(worked_example) == [SARA_KEY]
    err = capsys.readouterr().err
    assert "pending retirement" in err and "pending.jsonl" in err, err
