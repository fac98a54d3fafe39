"""Grace-period deprovisioning: the rule syntax, pending users, cancellation, due retirements, the state store."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scimflow.config import Guardrails
from scimflow.connectors.scim import SCIM_GROUPS_SCHEMA, SCIM_USERS_SCHEMA
from scimflow.plan import (
    GuardrailVerdict,
    Plan,
    build_plan,
    evaluate_guardrails,
    frames_from_fixtures,
    plan_lines,
    plan_scim,
    write_plan_files,
)
from scimflow.plan._grace import PENDING_FILE, PENDING_SCHEMA, read_pending, save_grace
from scimflow.preview import md_text, preview_markdown
from scimflow.rules import RuleError, load_rules, parse_rules
from scimflow.state import StateStore

FIXTURES = Path(__file__).parent / "fixtures"
SARA = "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"  # disabled in the worked example: its one retirement
DAY0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
DUE = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)  # 7d from a run on 1 December: due from the start of 8 December
WIDE = Guardrails(max_retire="100%", max_changes=500, min_source_users=1)


def grace_rules(tmp_path: Path, deprovision: str = "{action: retire, after: 7d}") -> Any:
    """The worked example's rules with ``deprovision`` replaced."""
    path = tmp_path / "rules.yaml"
    text = (FIXTURES / "rules.yaml").read_text()
    assert "deprovision: retire\n" in text
    path.write_text(text.replace("deprovision: retire\n", f"deprovision: {deprovision}\n"))
    return load_rules(path)


def frames(*, sara_enabled: bool = False) -> tuple[pl.DataFrame, pl.DataFrame, Any]:
    """The worked example's frames; Sara enabled again when asked (a returner)."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    if sara_enabled:
        for user in graph["users"]:
            if user["id"] == SARA:
                user["accountEnabled"] = True
    return frames_from_fixtures(graph, json.loads((FIXTURES / "superoffice.json").read_text()))


def plan_at(
    rules: Any, store: StateStore, now: dt.datetime, *, sara_enabled: bool = False, out: Path | None = None
) -> tuple[Plan, GuardrailVerdict]:
    """Plan the worked example at ``now`` with the store's pending entries; save the plan (and its entries)."""
    entra, so, ref = frames(sara_enabled=sara_enabled)
    plan = build_plan(entra, so, ref, rules, None, pending=store.pending_retirements(), now=now)
    verdict = evaluate_guardrails(plan, WIDE, entra.height)
    if out is not None:
        write_plan_files(plan, verdict, out)
    save_grace(store, plan, verdict)
    return plan, verdict


def rows_by_key(plan: Plan) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in (json.loads(line) for line in plan_lines(plan.rows))}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    """A real SQLite store in a file."""
    s = StateStore(f"sqlite:///{tmp_path}/state/state.db")
    yield s
    s.close()


# --- the rule language -------------------------------------------------------------------------------------


def test_grace_form_and_plain_form_both_load(tmp_path: Path) -> None:
    """``{action, after}`` gives the action and the period; plain ``retire`` stays valid and has no grace."""
    rules = grace_rules(tmp_path, "{action: remove_plan, after: 12h}")
    assert rules.deprovision_action == "remove_plan"
    assert rules.grace == dt.timedelta(hours=12)
    plain = load_rules(FIXTURES / "rules.yaml")
    assert plain.deprovision_action == "retire"
    assert plain.grace is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("{action: retire, after: 7x}", "deprovision.after"),
        ("{action: retire, after: 0d}", "from 1"),
        ("{action: retire, after: 4000d}", "longest grace period"),
        ("{action: retire, after: 7}", "deprovision.after"),
        ("{action: retire}", "deprovision.after"),
        ("{action: ignore, after: 7d}", "deprovision.action"),
        ("{action: retire, after: 7d, when: never}", "deprovision.when"),
        ("{action: retire, after: '" + "9" * 200_000 + "d'}", "deprovision.after"),
    ],
    ids=["unit", "zero", "too-long", "number", "missing-after", "ignore-with-grace", "unknown-key", "huge"],
)
def test_bad_grace_is_refused_naming_file_line_and_field(tmp_path: Path, value: str, words: str) -> None:
    """A malformed grace period is a RuleError naming the file, the line and the field, found at once."""
    path = tmp_path / "bad.yaml"
    path.write_text(f"version: 1\nrules: [{{name: A, when: {{all: true}}}}]\ndeprovision: {value}\n")
    started = time.monotonic()
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert time.monotonic() - started < 2
    text = str(info.value)
    assert f"{path}:3" in text
    assert words in text


def test_block_style_grace_error_names_the_after_line(tmp_path: Path) -> None:
    """Written over several lines, the error points at the ``after`` line itself."""
    text = "version: 1\nrules: [{name: A, when: {all: true}}]\ndeprovision:\n  action: retire\n  after: 2w\n"
    with pytest.raises(RuleError) as info:
        parse_rules(text, source="block.yaml")
    assert "block.yaml:5" in str(info.value)


# --- pending, cancelled, due ---------------------------------------------------------------------------------


def test_leaver_in_grace_is_pending_with_its_date(tmp_path: Path, store: StateStore) -> None:
    """A disabled user's retirement waits: no plan row, listed in pending.jsonl and the preview with its date."""
    out = tmp_path / "plan"
    plan, _ = plan_at(grace_rules(tmp_path), store, DAY0, out=out)
    assert "sara.lind@contoso.com" not in rows_by_key(plan)
    assert plan.counts["retire"] == 0 and plan.counts["pending_retire"] == 1
    pending = read_pending(out)
    assert pending == [
        {
            "associate_id": 12,
            "due": "2026-12-08T00:00:00Z",
            "entra_id": SARA,
            "first_seen": "2026-12-01T09:00:00Z",
            "key": "sara.lind@contoso.com",
            "reason": "disabled in Entra ID",
        }
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pending_retire"] == 1 and summary["retire"] == 0
    md = preview_markdown(summary, [], plan_dir=out)
    section = md[md.index("Pending retirement") :]
    assert md_text("sara.lind@contoso.com") in section and md_text("2026-12-08T00:00:00Z") in section
    stored = store.pending_retirements()
    assert stored.schema == PENDING_SCHEMA
    assert stored.select("partner_id", "key", "due").rows() == [("12", "sara.lind@contoso.com", DUE)]


def test_without_grace_the_plan_files_are_as_before(tmp_path: Path, store: StateStore) -> None:
    """No grace configured and nothing pending: the retire row as ever, no pending.jsonl, no pending count."""
    out = tmp_path / "plan"
    plan, _ = plan_at(load_rules(FIXTURES / "rules.yaml"), store, DAY0, out=out)
    want = [json.loads(line) for line in (FIXTURES / "expected-plan.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in (out / "plan.jsonl").read_text().splitlines()]
    assert got == want
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((FIXTURES / "expected-summary.json").read_text())
    assert {k: v for k, v in summary.items() if isinstance(v, int)} == expected
    assert not (out / PENDING_FILE).exists()
    assert plan.grace is None and store.pending_retirements().is_empty()


def test_returner_before_the_date_is_cancelled_with_no_write(tmp_path: Path, store: StateStore) -> None:
    """Back in scope on day 3: no retirement (nor pending one) for the user, and the stored entry is gone."""
    rules = grace_rules(tmp_path)
    plan_at(rules, store, DAY0)
    assert store.pending_retirements().height == 1
    plan, _ = plan_at(rules, store, DAY0 + dt.timedelta(days=3), sara_enabled=True, out=tmp_path / "day3")
    row = rows_by_key(plan)["sara.lind@contoso.com"]  # in scope again: her fields follow the rules as ever
    assert row["action"] == "update" and "active" not in row["changes"]
    assert plan.grace is not None
    assert plan.grace.cancelled.get_column("key").to_list() == ["sara.lind@contoso.com"]
    assert store.pending_retirements().is_empty()
    assert read_pending(tmp_path / "day3") == []
    assert json.loads((tmp_path / "day3" / "summary.json").read_text())["pending_retire"] == 0


def test_still_gone_before_the_date_stays_pending_with_the_first_date(tmp_path: Path, store: StateStore) -> None:
    """A later run before the date keeps the entry's first-seen time (the clock is not restarted)."""
    rules = grace_rules(tmp_path)
    plan_at(rules, store, DAY0)
    plan, _ = plan_at(rules, store, DUE - dt.timedelta(seconds=1))
    assert plan.counts["pending_retire"] == 1 and plan.counts["retire"] == 0
    assert store.pending_retirements().get_column("first_seen").to_list() == [DAY0]


def test_due_retirement_is_a_retire_row_through_the_guardrails(tmp_path: Path, store: StateStore) -> None:
    """After the date the retire row is back, its reason naming the period and dates; max_retire still holds it."""
    rules = grace_rules(tmp_path)
    plan_at(rules, store, DAY0)
    entra, so, ref = frames()
    plan = build_plan(entra, so, ref, rules, None, pending=store.pending_retirements(), now=DAY0 + dt.timedelta(days=8))
    row = rows_by_key(plan)["sara.lind@contoso.com"]
    assert row["action"] == "retire" and row["changes"] == {"active": {"from": True, "to": False}}
    assert "grace period (7d) ended 2026-12-08 00:00 UTC" in row["reason"]
    assert "pending since 2026-12-01" in row["reason"]
    assert plan.counts["retire"] == 1 and plan.counts["pending_retire"] == 0
    tight = evaluate_guardrails(plan, Guardrails(max_retire=0, max_changes=500, min_source_users=1), entra.height)
    assert tight.verdict == "over_budget" and "retire" in tight.held
    save_grace(store, plan, tight)  # held, not applied: the entry stays until its retirement is applied
    assert store.pending_retirements().get_column("key").to_list() == ["sara.lind@contoso.com"]
    assert store.drop_pending(["12"]) == 1
    assert store.pending_retirements().is_empty()


def test_a_longer_period_moves_the_date_from_the_first_seen_time(tmp_path: Path, store: StateStore) -> None:
    """Raising ``after`` from 7d to 30d: the entry keeps its first-seen time and falls due 30 days after it."""
    plan_at(grace_rules(tmp_path), store, DAY0)
    plan, _ = plan_at(grace_rules(tmp_path, "{action: retire, after: 30d}"), store, DAY0 + dt.timedelta(days=8))
    assert plan.counts["pending_retire"] == 1 and plan.counts["retire"] == 0
    stored = store.pending_retirements().select("first_seen", "due").row(0)
    assert stored == (DAY0, DUE + dt.timedelta(days=23))


def test_a_period_in_days_falls_due_on_its_day_whatever_the_hour(tmp_path: Path, store: StateStore) -> None:
    """First seen at 09:00, a 7d period is due to the run at 08:59 seven days later (a nightly run's jitter)."""
    rules = grace_rules(tmp_path)
    plan_at(rules, store, DAY0)
    plan, _ = plan_at(rules, store, DAY0 + dt.timedelta(days=7, minutes=-1))
    assert rows_by_key(plan)["sara.lind@contoso.com"]["action"] == "retire"


def test_remove_plan_with_grace_removes_the_plan_when_due(tmp_path: Path, store: StateStore) -> None:
    """``{action: remove_plan, after}``: pending first, then a user_plan → null row."""
    rules = grace_rules(tmp_path, "{action: remove_plan, after: 12h}")
    first, _ = plan_at(rules, store, DAY0)
    assert first.counts["pending_retire"] == 1
    due, _ = plan_at(rules, store, DAY0 + dt.timedelta(hours=12))
    row = rows_by_key(due)["sara.lind@contoso.com"]
    assert row["action"] == "retire" and set(row["changes"]) == {"user_plan"}
    assert "(12h)" in row["reason"]


def test_crash_between_planning_and_applying_loses_no_entry(tmp_path: Path) -> None:
    """The entry is stored when the plan is saved: a new process (a new store) still finds it, and it falls due."""
    url = f"sqlite:///{tmp_path}/state/state.db"
    rules = grace_rules(tmp_path)
    with StateStore(url) as first:
        plan_at(rules, first, DAY0, out=tmp_path / "day0")
        # the process dies here: no apply ever runs
    with StateStore(url) as second:
        assert second.pending_retirements().get_column("key").to_list() == ["sara.lind@contoso.com"]
        plan, _ = plan_at(rules, second, DAY0 + dt.timedelta(days=7))
        assert rows_by_key(plan)["sara.lind@contoso.com"]["action"] == "retire"


def test_unhealthy_source_records_nothing(tmp_path: Path, store: StateStore) -> None:
    """A plan whose source is judged unhealthy neither adds nor cancels pending entries."""
    rules = grace_rules(tmp_path)
    plan_at(rules, store, DAY0)
    entra, so, ref = frames(sara_enabled=True)
    plan = build_plan(entra, so, ref, rules, None, pending=store.pending_retirements(), now=DAY0)
    unhealthy = evaluate_guardrails(plan, Guardrails(min_source_users=1000), entra.height)
    assert unhealthy.verdict == "source_unhealthy"
    assert save_grace(store, plan, unhealthy) is None
    assert store.pending_retirements().height == 1


def test_grace_removed_from_the_rules_drops_entries_and_retires_now(tmp_path: Path, store: StateStore) -> None:
    """Back to plain ``retire``: the retirement is immediate and the stored entries are dropped."""
    plan_at(grace_rules(tmp_path), store, DAY0)
    plan, _ = plan_at(load_rules(FIXTURES / "rules.yaml"), store, DAY0 + dt.timedelta(days=1))
    assert rows_by_key(plan)["sara.lind@contoso.com"]["reason"] == "disabled in Entra ID"
    assert plan.counts["pending_retire"] == 0
    assert store.pending_retirements().is_empty()


def test_naive_now_is_refused(tmp_path: Path) -> None:
    """``now`` must say its time zone: a naive datetime would shift every date."""
    entra, so, ref = frames()
    with pytest.raises(ValueError, match="aware"):
        build_plan(entra, so, ref, grace_rules(tmp_path), None, now=dt.datetime(2026, 12, 1))


# --- the SCIM target --------------------------------------------------------------------------------------


def _scim_sara() -> tuple[pl.DataFrame, pl.DataFrame]:
    user: dict[str, Any] = dict.fromkeys(SCIM_USERS_SCHEMA.names())
    user.update(
        partner_id="scim-sara", user_name="sara.lind@contoso.com", entra_id=SARA, active=True, retired=False, groups=[]
    )
    return pl.DataFrame([user], schema=SCIM_USERS_SCHEMA), pl.DataFrame(schema=SCIM_GROUPS_SCHEMA)


def test_scim_target_pending_then_deactivated_by_scim_id(tmp_path: Path, store: StateStore) -> None:
    """A SCIM target: the entry is keyed by the SCIM id; when due the row deactivates that id."""
    rules = grace_rules(tmp_path, "{action: remove_plan, after: 7d}")
    entra, _, _ = frames()
    users, groups = _scim_sara()
    plan = plan_scim(entra, users, groups, rules, pending=store.pending_retirements(), now=DAY0)
    assert not plan.rows.filter(pl.col("action") == "retire").height
    assert plan.grace is not None
    assert plan.grace.waiting.select("partner_id", "associate_id").rows() == [("scim-sara", "scim-sara")]
    save_grace(store, plan, evaluate_guardrails(plan, WIDE, entra.height))
    later = plan_scim(entra, users, groups, rules, pending=store.pending_retirements(), now=DAY0 + dt.timedelta(days=7))
    row = rows_by_key(later)["sara.lind@contoso.com"]
    assert row["associate_id"] == "scim-sara"
    assert row["changes"] == {"active": {"from": True, "to": False}}  # SCIM deactivates, also for remove_plan
    assert "grace period (7d)" in row["reason"]


# --- PostgreSQL --------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_pending_entries_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """On PostgreSQL: recorded, read back by a new store with their times, cancelled, dropped."""
    rules = grace_rules(tmp_path)
    with StateStore(postgres_url) as s:
        plan_at(rules, s, DAY0)
    with StateStore(postgres_url) as s:
        got = s.pending_retirements()
        assert got.schema == PENDING_SCHEMA
        assert got.select("partner_id", "first_seen", "due").rows() == [("12", DAY0, DUE)]
        plan_at(rules, s, DAY0 + dt.timedelta(days=1), sara_enabled=True)
        assert s.pending_retirements().is_empty()
        plan_at(rules, s, DAY0 + dt.timedelta(days=2))
        assert s.drop_pending([12]) == 1


# --- any sequence of runs -------------------------------------------------------------------------------------

STEPS = st.lists(
    st.tuples(st.integers(min_value=1, max_value=60), st.sampled_from([False, False, False, True]), st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_any_sequence_of_runs_retires_exactly_when_the_model_says(
    tmp_path: Path, steps: list[tuple[int, bool, bool]]
) -> None:
    """Runs hours apart, Sara enabled or not, each plan applied or not: a retire row exactly when she has been
    continuously gone since a run whose day plus 7 days has come; never while pending or after a return."""
    rules = grace_rules(tmp_path)
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so_data = json.loads((FIXTURES / "superoffice.json").read_text())
    with StateStore("sqlite://") as store:
        now, retired, first_seen = DAY0, False, None
        for hours, enabled, apply in steps:
            now += dt.timedelta(hours=hours)
            for user in graph["users"]:
                if user["id"] == SARA:
                    user["accountEnabled"] = enabled
            for user in so_data["users"]:
                if user["AssociateId"] == 12:
                    user["Deleted"] = retired
            entra, so, ref = frames_from_fixtures(graph, so_data)
            plan = build_plan(entra, so, ref, rules, None, pending=store.pending_retirements(), now=now)
            save_grace(store, plan, evaluate_guardrails(plan, WIDE, entra.height))
            # the model: gone (disabled, not retired) since first_seen; due from the start of its day + 7 days
            if enabled or retired:
                first_seen = None
            elif first_seen is None:
                first_seen = now
            due = None if first_seen is None else first_seen.replace(hour=0, minute=0) + dt.timedelta(days=7)
            row = rows_by_key(plan).get("sara.lind@contoso.com", {})
            assert (row.get("action") == "retire") == (due is not None and now >= due), (now, due, row)
            assert plan.counts["pending_retire"] == (1 if due is not None and now < due else 0)
            kept = store.pending_retirements().get_column("first_seen").to_list()
            assert kept == ([] if first_seen is None else [first_seen])
            if apply and row.get("action") == "retire":
                store.drop_pending(["12"])  # what finish_apply does once MakeRetired is applied
                retired, first_seen = True, None
