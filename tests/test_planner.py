"""The planner: the worked example, every situation, the clarifications, diff rules, guardrails, plan files."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import polars as pl
import pytest
from helpers_frames import entra, reference, so
from hypothesis import given, settings
from hypothesis import strategies as st

from scimflow.commands.plan_cmd import run_plan_offline
from scimflow.config import Guardrails
from scimflow.frames import Reference
from scimflow.plan import (
    ROW_SCHEMA,
    GuardrailVerdict,
    build_plan,
    evaluate_guardrails,
    frames_from_fixtures,
    plan_lines,
    write_plan_files,
)
from scimflow.rules import RuleError, load_rules, parse_rules

FIXTURES = Path(__file__).parent / "fixtures"

RULES = """\
version: 1
match: [entra_id, user_name, email]
mapping:
  user_name: userPrincipalName
  first_name: givenName
  email: coalesce(mail, userPrincipalName)
  title: jobTitle
deprovision: {deprovision}
rules:
  - name: Staff
    when: {{in_group: Staff}}
    set: {{role: User}}
  - name: Sales
    when: {{in_group: Sales}}
    set:
      user_plan: Sales Premium
      secondary_groups: [Sales Norway]
"""


def rules(deprovision: str = "retire", text: str | None = None):
    """The unit-test rule set (or ``text``)."""
    return parse_rules(text or RULES.format(deprovision=deprovision), source="unit.yaml")


def eu(n: int, **kw) -> dict:
    """An enabled Entra user n in group Staff, fully mapped."""
    user = {
        "id": f"e{n}",
        "userPrincipalName": f"user{n}@x.com",
        "givenName": f"First{n}",
        "mail": f"user{n}@x.com",
        "jobTitle": "Engineer",
        "groups": ["Staff"],
    }
    user.update(kw)
    return user


def su(n: int, **kw) -> dict:
    """The SuperOffice user matching ``eu(n)`` exactly (so: unchanged)."""
    user = {
        "associate_id": 100 + n,
        "user_name": f"user{n}@x.com",
        "first_name": f"First{n}",
        "email": f"user{n}@x.com",
        "title": "Engineer",
        "role": "User",
    }
    user.update(kw)
    return user


def plan_of(entra_users, so_users, *, deprovision="retire", text=None, links=None, quarantine=None, ref=None):
    """Build a plan; return it and its rows parsed from plan lines, by key."""
    link_frame = pl.DataFrame(links or [], schema={"entra_id": pl.String, "associate_id": pl.Int64}, orient="row")
    plan = build_plan(
        entra(*entra_users), so(*so_users), ref or reference(), rules(deprovision, text), link_frame, quarantine
    )
    rows = [json.loads(line) for line in plan_lines(plan.rows)]
    return plan, {r["key"]: r for r in rows}


# -- the worked example ---------------------------------------------------------------------------------


def test_worked_example_reproduces_expected_plan_and_summary(graph_fixture, superoffice_fixture):
    """graph.json + superoffice.json + rules.yaml plan to expected-plan.jsonl and the summary counts."""
    e, s, ref = frames_from_fixtures(graph_fixture, superoffice_fixture)
    plan = build_plan(e, s, ref, load_rules(FIXTURES / "rules.yaml"), None)
    got = [json.loads(line) for line in plan_lines(plan.rows)]
    want = [json.loads(line) for line in (FIXTURES / "expected-plan.jsonl").read_text().splitlines()]
    assert [r.pop("reason") is None for r in got] == [r.pop("reason") is None for r in want]
    assert got == want
    summary = json.loads((FIXTURES / "expected-summary.json").read_text())
    assert plan.counts == {k: v for k, v in summary.items() if isinstance(v, int)}


def test_offline_plan_writes_private_files_and_exit_code(tmp_path):
    """run_plan_offline writes 0600 plan files whose hash is the sha256 of plan.jsonl, and exits 2 with rows."""
    out = tmp_path / "out"
    code = run_plan_offline(FIXTURES / "graph.json", FIXTURES / "superoffice.json", FIXTURES / "rules.yaml", out)
    assert code == 2
    for name in ("plan.jsonl", "summary.json", "plan.parquet"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    body = (out / "plan.jsonl").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan_hash"] == hashlib.sha256(body).hexdigest()
    assert set(summary["guardrails"]) == {"verdict", "held", "reasons"}
    for line in body.decode().splitlines():
        row = json.loads(line)
        assert set(row) == {"action", "key", "entra_id", "associate_id", "rules", "changes", "reason"}
        assert line == json.dumps(row, sort_keys=True, separators=(",", ":"))
    parquet = pl.read_parquet(out / "plan.parquet")
    assert parquet.schema == ROW_SCHEMA
    assert parquet.height == summary["create"] + summary["update"] + summary["retire"]


def test_offline_plan_exit_codes(tmp_path):
    """Exit 0 for an empty plan, 1 for a bad rule file."""
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"users": [], "groups": []}))
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"users": []}))
    assert (
        run_plan_offline(graph, s, FIXTURES / "rules.yaml", tmp_path / "o", guardrails=Guardrails(min_source_users=0))
        == 0
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: []\n")
    assert run_plan_offline(graph, s, bad, tmp_path / "o2") == 1
    assert run_plan_offline(graph, s, FIXTURES / "rules.yaml", tmp_path / "o3") == 1  # unhealthy: 0 users


def test_fixture_frames(graph_fixture, superoffice_fixture):
    """Fixture frames: transitive groups, plan from licences, company from the contact, confidential."""
    e, s, _ = frames_from_fixtures(graph_fixture, superoffice_fixture)
    ola = e.filter(pl.col("givenName") == "Ola").row(0, named=True)
    assert ola["groups"] == ["Employees", "SO Sales", "Sales Oslo"]  # SO Sales through Sales Oslo
    assert len(ola["group_ids"]) == 3
    kari = s.filter(pl.col("associate_id") == 11).row(0, named=True)
    assert (kari["user_plan"], kari["owner_company"], kari["confidential"]) == ("Sales Premium", "Contoso AS", False)
    data = json.loads(json.dumps(superoffice_fixture))
    lic = data["users"][0]["LicenseOwners"][0]["RestrictedModuleLicenses"]
    lic[:] = [{"Name": "superlicense-no-selection", "Assigned": True}, {"Name": "visible-for", "Assigned": True}]
    _, s2, _ = frames_from_fixtures(graph_fixture, data)
    assert s2.row(0, named=True)["user_plan"] is None
    assert s2.row(0, named=True)["confidential"] is True


# -- the situations table ----------------------------------------------------------------------------------


def test_create():
    """An in-scope valid user with no partner is created with every non-null field, no active."""
    _, rows = plan_of([eu(1, groups=["Staff", "Sales"], jobTitle=None)], [])
    row = rows["user1@x.com"]
    assert row["action"] == "create"
    assert row["associate_id"] is None
    assert row["rules"] == ["Staff", "Sales"]
    assert row["changes"] == {
        "user_name": {"from": None, "to": "user1@x.com"},
        "first_name": {"from": None, "to": "First1"},
        "email": {"from": None, "to": "user1@x.com"},
        "role": {"from": None, "to": "User"},
        "user_plan": {"from": None, "to": "Sales Premium"},
        "secondary_groups": {"from": None, "to": ["Sales Norway"]},
    }


def test_update():
    """A matched active partner that differs is updated with only the changed fields."""
    plan, rows = plan_of([eu(1, jobTitle="Boss")], [su(1, role="Sales")])
    row = rows["user1@x.com"]
    assert row["action"] == "update"
    assert row["associate_id"] == 101
    assert row["changes"] == {"title": {"from": "Engineer", "to": "Boss"}, "role": {"from": "Sales", "to": "User"}}
    assert plan.counts["update"] == 1


def test_unchanged_is_counted_not_listed():
    """A matched active partner that is the same is unchanged: counted, not in the plan."""
    plan, rows = plan_of([eu(1)], [su(1)])
    assert rows == {}
    assert plan.counts["unchanged"] == 1
    assert plan.rows.is_empty()


def test_reactivate_with_field_changes():
    """A retired partner of an in-scope user is reactivated, with active false→true and any field changes."""
    _, rows = plan_of([eu(1, givenName="New")], [su(1, retired=True)])
    row = rows["user1@x.com"]
    assert row["action"] == "reactivate"
    assert row["changes"] == {"active": {"from": False, "to": True}, "first_name": {"from": "First1", "to": "New"}}


@pytest.mark.parametrize(
    ("user", "cause"),
    [(eu(1, accountEnabled=False), "disabled"), (eu(1, groups=[]), "out of scope")],
    ids=["disabled", "out-of-scope"],
)
def test_retire_disabled_or_out_of_scope(user, cause):
    """A disabled or out-of-scope user with an active partner is retired: active true→false, no rules, a reason."""
    _, rows = plan_of([user], [su(1)])
    row = rows["user1@x.com"]
    assert row["action"] == "retire"
    assert row["changes"] == {"active": {"from": True, "to": False}}
    assert row["rules"] == []
    assert cause in row["reason"]


@pytest.mark.parametrize(
    ("deprovision", "plan_name", "action", "changes"),
    [
        ("retire", "Sales Premium", "retire", {"active": {"from": True, "to": False}}),
        ("remove_plan", "Sales Premium", "retire", {"user_plan": {"from": "Sales Premium", "to": None}}),
        ("remove_plan", None, "unchanged", None),
        ("ignore", "Sales Premium", "unchanged", None),
    ],
    ids=["retire", "remove-plan", "remove-plan-without-plan", "ignore"],
)
def test_deprovision_modes(deprovision, plan_name, action, changes):
    """deprovision decides what happens to a disabled user's partner; remove_plan without a plan is unchanged."""
    plan, rows = plan_of([eu(1, accountEnabled=False)], [su(1, user_plan=plan_name)], deprovision=deprovision)
    if action == "unchanged":
        assert rows == {}
        assert plan.counts["unchanged"] == 1
    else:
        assert rows["user1@x.com"]["action"] == action
        assert rows["user1@x.com"]["changes"] == changes


@pytest.mark.parametrize(
    ("user", "partner", "count"),
    [
        (eu(1, accountEnabled=False), su(1, retired=True), "unchanged"),
        (eu(1, groups=[]), su(1, retired=True), "unchanged"),
        (eu(1, accountEnabled=False), None, "out_of_scope"),
        (eu(1, groups=[]), None, "out_of_scope"),
    ],
    ids=["disabled-retired-partner", "out-of-scope-retired-partner", "disabled-no-partner", "out-of-scope-no-partner"],
)
def test_deprovisioned_users_already_retired_or_without_partner(user, partner, count):
    """Already-retired partners are unchanged; out_of_scope counts only users with no partner."""
    plan, rows = plan_of([user], [partner] if partner else [])
    assert rows == {}
    assert plan.counts[count] == 1
    assert sum(plan.counts[k] for k in ("unchanged", "out_of_scope")) == 1


def test_gone_user_is_retired_by_superoffice_user_name():
    """A linked Entra user that is gone retires its partner, keyed by the SO UserName, keeping the entra_id."""
    plan, rows = plan_of([eu(2)], [su(1, user_name=" User1@X.com "), su(2)], links=[("E-GONE", 101)])
    row = rows["user1@x.com"]
    assert row == {
        "action": "retire",
        "key": "user1@x.com",
        "entra_id": "E-GONE",
        "associate_id": 101,
        "rules": [],
        "changes": {"active": {"from": True, "to": False}},
        "reason": row["reason"],
    }
    assert "gone" in row["reason"]
    assert plan.counts["unmanaged"] == 0


def test_gone_user_with_retired_partner_is_unchanged():
    """A gone user whose partner is already retired is unchanged."""
    plan, rows = plan_of([], [su(1, retired=True)], links=[("E-GONE", 101)])
    assert rows == {}
    assert plan.counts["unchanged"] == 1


def test_gone_link_yields_to_a_present_user_finding_the_same_partner():
    """A re-created Entra user (new id, same UPN) takes over the partner instead of it being retired."""
    plan, rows = plan_of([eu(1)], [su(1)], links=[("E-OLD", 101)])
    assert rows == {}
    assert plan.counts["unchanged"] == 1


@pytest.mark.parametrize(
    ("users", "quarantine", "words"),
    [
        ([eu(1)], pl.DataFrame({"id": ["e1"], "reason": ["mail is not an e-mail address"]}), "mail is not"),
        ([eu(1), eu(9, userPrincipalName="USER1@x.com ")], None, "shared"),
        ([eu(1, groups=["Staff", "Sales"])], None, "rule 'Sales'"),
    ],
    ids=["validation", "duplicate-upn", "unknown-reference-name"],
)
def test_quarantine_leaves_the_partner_untouched(users, quarantine, words):
    """Invalid users (validation, duplicate UPN, unknown reference name) are quarantined; the partner is untouched."""
    ref = reference(plans=("Other plan",))
    plan, rows = plan_of(users, [su(1, role="Old")], quarantine=quarantine, ref=ref)
    row = rows["user1@x.com"]
    assert row["action"] == "quarantine"
    assert row["changes"] == {}
    assert words in row["reason"]
    assert plan.counts["update"] == 0
    assert plan.counts["unmanaged"] == 0
    if len(users) == 1:
        assert row["associate_id"] == 101
        assert row["rules"] == ["Staff", "Sales"][: len(users[0]["groups"])]


def test_unknown_reference_name_names_rule_and_value():
    """An unknown final element value quarantines with a reason naming the rule and the value."""
    _, rows = plan_of([eu(1, groups=["Staff", "Sales"])], [], ref=reference(groups=("Fallback group",)))
    reason = rows["user1@x.com"]["reason"]
    assert "rule 'Sales'" in reason
    assert "Sales Norway" in reason


def test_only_final_values_are_resolved():
    """A value overwritten by a later rule does not quarantine."""
    text = RULES.format(deprovision="retire") + "  - {name: Fix, when: {all: true}, set: {role: User}}\n"
    text = text.replace("set: {role: User}", "set: {role: Nonexistent}", 1)
    _, rows = plan_of([eu(1)], [], text=text)
    assert rows["user1@x.com"]["action"] == "create"


def test_orphan_validation_quarantine_is_listed():
    """A validation failure for a user missing from the Entra frame is still listed as quarantine."""
    plan, rows = plan_of([], [], quarantine=pl.DataFrame({"id": ["lost"], "reason": ["no userPrincipalName"]}))
    assert rows["lost"]["action"] == "quarantine"
    assert plan.counts["quarantine"] == 1


def test_conflict_two_partners():
    """A user matching two SuperOffice users is a conflict; nobody involved is touched."""
    plan, rows = plan_of([eu(1)], [su(1, role="Old"), su(2, user_name="user1@x.com", email="user1@x.com")])
    row = rows["user1@x.com"]
    assert row["action"] == "conflict"
    assert row["associate_id"] is None
    assert row["changes"] == {}
    assert row["rules"] == ["Staff"]
    assert row["reason"]
    assert plan.counts["unmanaged"] == 0


def test_conflict_shared_partner():
    """Two Entra users finding the same partner are both conflicts, each naming that partner."""
    _, rows = plan_of(
        [eu(1), eu(2, mail="user1@x.com", userPrincipalName="other@x.com")], [su(1, user_name="nobody@x.com")]
    )
    assert {k: (r["action"], r["associate_id"]) for k, r in rows.items()} == {
        "user1@x.com": ("conflict", 101),
        "other@x.com": ("conflict", 101),
    }


def test_quarantined_user_still_matches_and_quarantine_beats_conflict():
    """A quarantined user shares its partner: the other user is a conflict, the quarantined one stays quarantine."""
    q = pl.DataFrame({"id": ["e1"], "reason": ["bad"]})
    _, rows = plan_of([eu(1), eu(2, mail="user1@x.com", userPrincipalName="other@x.com")], [su(1)], quarantine=q)
    assert rows["user1@x.com"]["action"] == "quarantine"
    assert rows["user1@x.com"]["associate_id"] == 101
    assert rows["other@x.com"]["action"] == "conflict"


def test_unmanaged_counts_any_type_nobody_found_or_linked():
    """unmanaged counts SO users of any type that no Entra user found, no link names and no conflict involves."""
    so_users = [
        su(1),
        su(2),  # nobody matches: unmanaged
        su(3, user_type="SystemAssociate"),  # same UPN as eu(3) but never matched: unmanaged
        su(4),  # linked to a gone user, already retired → managed
        su(5, user_type="ExternalAssociate", user_name="x@x.com"),
    ]
    so_users[3]["retired"] = True
    plan, rows = plan_of([eu(1), eu(3)], so_users, links=[("gone", 104)])
    assert plan.counts["unmanaged"] == 3
    assert rows["user3@x.com"]["action"] == "create"  # the system user is not a partner
    assert plan.managed == 2
    assert plan.managed_active == 1


# -- matching ----------------------------------------------------------------------------------------------


def test_link_beats_user_name_and_stops_there():
    """The stored link is tried first and, having found a partner, no other key is tried."""
    plan, rows = plan_of(
        [eu(1)], [su(1), su(2, user_name="u2@x", email="u2@x", first_name="First1")], links=[("E1", 102)]
    )
    assert rows["user1@x.com"]["action"] == "update"
    assert rows["user1@x.com"]["associate_id"] == 102
    assert plan.counts["unmanaged"] == 1


def test_user_name_match_is_trimmed_and_case_insensitive():
    """UserName matches the mapped user_name trimmed and case-insensitively; no update for case only."""
    plan, rows = plan_of([eu(1, userPrincipalName=" USER1@X.com")], [su(1, user_name="user1@x.com ")])
    assert rows == {}
    assert plan.counts["unchanged"] == 1


def test_email_is_the_last_resort():
    """When neither link nor user name finds a partner, the e-mail does."""
    _, rows = plan_of([eu(1)], [su(1, user_name="legacy-login")])
    row = rows["user1@x.com"]
    assert row["action"] == "update"
    assert row["changes"] == {"user_name": {"from": "legacy-login", "to": "user1@x.com"}}
    assert json.loads(row_explain(eu(1), su(1, user_name="legacy-login")))["matched_by"] == "email"


def row_explain(user, partner) -> str:
    """The explain JSON of the single plan row."""
    plan, _ = plan_of([user], [partner])
    return plan.rows.get_column("explain")[0]


def test_matched_pairs_are_reported_for_linking():
    """Every matched pair (not conflicts or quarantines) is in matched_pairs, for the state store."""
    plan, _ = plan_of([eu(1), eu(2, accountEnabled=False)], [su(1), su(2)])
    assert sorted(plan.matched_pairs.rows()) == [("e1", 101), ("e2", 102)]


def test_matched_pairs_leave_out_links_already_stored():
    """A pair stored as a link already is not written again: only the new pairs are reported."""
    plan, _ = plan_of([eu(1), eu(2), eu(3)], [su(1), su(2), su(3)], links=[("e1", 101)])
    assert sorted(plan.matched_pairs.rows()) == [("e2", 102), ("e3", 103)]


# -- diff rules --------------------------------------------------------------------------------------------


def test_null_mapped_value_clears():
    """A mapped attribute that is null in Entra clears the SuperOffice value."""
    _, rows = plan_of([eu(1, jobTitle=None)], [su(1)])
    assert rows["user1@x.com"]["changes"] == {"title": {"from": "Engineer", "to": None}}


def test_other_strings_compare_exactly():
    """Fields other than user_name and email compare exactly (case matters)."""
    _, rows = plan_of([eu(1, jobTitle="engineer")], [su(1)])
    assert rows["user1@x.com"]["changes"] == {"title": {"from": "Engineer", "to": "engineer"}}


def test_elements_not_set_are_left_alone_and_lists_compare_as_sets():
    """Unset elements are never changed; secondary_groups compare as sets and are written sorted."""
    user = eu(1, groups=["Staff", "Sales"])
    same = su(1, user_plan="Sales Premium", secondary_groups=["Sales Norway"], primary_group="Anything")
    _, rows = plan_of([user], [same])
    assert rows == {}
    text = RULES.format(deprovision="retire").replace("[Sales Norway]", "[Support, Sales Norway]")
    _, rows = plan_of(
        [user], [su(1, user_plan="Sales Premium", secondary_groups=["Support", "Fallback group"])], text=text
    )
    assert rows["user1@x.com"]["changes"] == {
        "secondary_groups": {"from": ["Fallback group", "Support"], "to": ["Sales Norway", "Support"]}
    }


def test_rows_are_sorted_by_key_then_entra_id():
    """Plan rows are sorted by key, then entra_id."""
    plan, _ = plan_of([eu(3), eu(1), eu(2)], [])
    assert plan.rows.get_column("key").to_list() == ["user1@x.com", "user2@x.com", "user3@x.com"]


def test_key_falls_back_to_entra_id_without_upn():
    """A user without a UPN is keyed by its Entra id."""
    text = RULES.format(deprovision="retire").replace("user_name: userPrincipalName", "user_name: mail")
    _, rows = plan_of([eu(1, userPrincipalName=None)], [], text=text)
    assert rows["e1"]["entra_id"] == "e1"


def test_ambiguous_group_in_tenant_is_a_rule_error():
    """A rule naming a display name two groups share fails planning with a RuleError naming the rule."""
    users = [eu(1, groups=["Staff"], group_ids=["g1"]), eu(2, groups=["Staff"], group_ids=["g2"])]
    with pytest.raises(RuleError, match="Staff"):
        plan_of(users, [])


# -- guardrails --------------------------------------------------------------------------------------------


def _plan_with(counts: dict[str, int], managed: int = 100, managed_active: int = 100):
    from scimflow.plan import Plan

    base = dict.fromkeys(
        (
            "create",
            "update",
            "retire",
            "reactivate",
            "quarantine",
            "conflict",
            "unchanged",
            "unmanaged",
            "out_of_scope",
        ),
        0,
    )
    base.update(counts)
    return Plan(rows=pl.DataFrame(schema=ROW_SCHEMA), counts=base, managed_active=managed_active, managed=managed)


@pytest.mark.parametrize(
    ("counts", "g", "source", "last", "verdict", "held"),
    [
        ({"create": 3, "retire": 5}, {"max_retire": "5%"}, 100, 100, "ok", []),
        ({"create": 3, "retire": 6}, {"max_retire": "5%"}, 100, 100, "over_budget", ["retire"]),
        ({"create": 3, "retire": 6}, {"max_retire": 6}, 100, None, "ok", []),
        ({"create": 400, "update": 101}, {"max_changes": 500}, 100, None, "over_budget", ["create", "update"]),
        (
            {"update": 11, "retire": 1},
            {"max_changes": "10%", "max_retire": 10},
            100,
            None,
            "over_budget",
            ["update", "retire"],
        ),
        ({"create": 1}, {"min_source_users": 50}, 49, None, "source_unhealthy", ["create"]),
        ({"create": 1}, {"max_source_drop": "20%"}, 79, 100, "source_unhealthy", ["create"]),
        ({"create": 1}, {"max_source_drop": "20%"}, 80, 100, "ok", []),
    ],
    ids=[
        "retire-within",
        "retire-over",
        "retire-count",
        "changes-over",
        "changes-percent",
        "min-source",
        "source-drop",
        "source-drop-within",
    ],
)
def test_guardrails(counts, g, source, last, verdict, held):
    """Over budget holds the whole class; an unhealthy source holds everything."""
    result = evaluate_guardrails(_plan_with(counts), Guardrails.model_validate(g), source, last)
    assert result.verdict == verdict
    assert result.held == held
    assert bool(result.reasons) == (verdict != "ok")


# -- plan files ----------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=12), st.text(max_size=12))
def test_plan_lines_equal_json_dumps_for_any_text(upn_tail, title):
    """Every plan line equals json.dumps(row, sort_keys=True, separators=(",", ":")) whatever the text."""
    plan, _ = plan_of([eu(1, userPrincipalName="u" + upn_tail, jobTitle=title or None)], [])
    for line in plan_lines(plan.rows):
        assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))


def test_write_plan_files_summary(tmp_path):
    """summary.json holds the nine counts, the plan hash and the guardrails object."""
    plan, _ = plan_of([eu(1)], [])
    h = write_plan_files(plan, GuardrailVerdict(), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary.pop("plan_hash") == h
    assert summary.pop("guardrails") == {"verdict": "ok", "held": [], "reasons": []}
    assert summary == plan.counts


NOT_SELECTED_RULES = """\
version: 1
match: [user_name]
mapping:
  user_name: userPrincipalName
  first_name: givenName
  email: coalesce(mail, userPrincipalName)
  title: jobTitle
rules:
  - name: Staff
    when: {in_group: Staff}
    set: {role: User, user_plan: {value: Not selected, scope: always}}
"""


def _ref_with_no_plan() -> Reference:
    base = reference()
    plans = pl.concat(
        [base.plans, pl.DataFrame({"license": ["superlicense-no-selection"], "name": ["Not selected"]})]
    )
    return Reference(roles=base.roles, groups=base.groups, plans=plans, companies=base.companies)


@pytest.mark.parametrize(
    ("so_plan", "expected"),
    [("Sales Premium", {"user_plan": {"from": "Sales Premium", "to": None}}), (None, None)],
    ids=["has-plan", "no-plan"],
)
def test_not_selected_plan_means_no_plan(so_plan, expected):
    """'Plan – Always: Not selected' removes a plan, and a user without one stays unchanged (converges)."""
    _, rows = plan_of([eu(1)], [su(1, user_plan=so_plan)], text=NOT_SELECTED_RULES, ref=_ref_with_no_plan())
    if expected is None:
        assert rows == {}
    else:
        assert rows["user1@x.com"]["changes"] == expected


def test_superoffice_extract_missing_linked_users_is_unhealthy():
    """A SuperOffice extract missing more linked users than max_source_drop allows applies nothing."""
    plan, _ = plan_of([eu(1)], [su(1)])
    g = Guardrails()
    ok = evaluate_guardrails(plan, g, source_users=1, linked=10, linked_missing=2)
    assert ok.verdict == "ok"
    bad = evaluate_guardrails(plan, g, source_users=1, linked=10, linked_missing=3)
    assert bad.verdict == "source_unhealthy"
    assert any("SuperOffice extract misses 3 of the 10 linked users" in r for r in bad.reasons)


# -- source health: a broken extract never retires anyone ------------------------------------------


def _tenant(n: int) -> tuple[list[dict], list[dict], list[dict]]:
    users = [eu(i) for i in range(n)]
    partners = [su(i) for i in range(n)]
    links = [{"entra_id": f"e{i}", "associate_id": 100 + i} for i in range(n)]
    return users, partners, links


@pytest.mark.parametrize(
    ("case", "verdict"),
    [
        ("empty", "source_unhealthy"),
        ("halved", "source_unhealthy"),
        ("all_disabled", "over_budget"),
    ],
    ids=["empty-extract", "halved-extract", "all-disabled-extract"],
)
def test_broken_extracts_retire_nobody(case, verdict):
    """Empty, halved and all-disabled Entra extracts of a 40-user tenant leave every retirement held."""
    users, partners, links = _tenant(40)
    last = 40
    if case == "empty":
        users = []
    elif case == "halved":
        users = users[:20]
    else:
        users = [{**u, "accountEnabled": False} for u in users]
    plan, _ = plan_of(users, partners, links=[(x["entra_id"], x["associate_id"]) for x in links])
    assert plan.counts["retire"] >= 20  # the plan itself would retire them...
    result = evaluate_guardrails(plan, Guardrails(), source_users=len(users), last_source_users=last)
    assert result.verdict == verdict
    assert "retire" in result.held  # ...but the guardrails hold every retirement: none is applied
    assert any(("min_source_users" in r) or ("max_source_drop" in r) or ("max_retire" in r) for r in result.reasons)
