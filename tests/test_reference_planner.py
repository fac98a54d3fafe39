"""The reference planner against the worked example and one hand-written case per situation-table row."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.conftest import FIXTURES
from tests.reference_planner import (
    entra_from_fixture,
    evaluate_expr,
    ref_from_fixture,
    reference_plan,
    so_from_fixture,
)

REF = {
    "role": {"User", "Sales", "Manager"},
    "primary_group": {"Fallback group", "Support"},
    "secondary_groups": {"Sales Norway", "Sales Sweden"},
    "user_plan": {"Sales Premium", "Service Premium"},
    "owner_company": {"Contoso AS"},
}
MAPPING = {"user_name": "userPrincipalName", "first_name": "givenName", "email": "coalesce(mail, userPrincipalName)"}


def rules(*items: dict[str, Any], deprovision: str = "retire", **extra: Any) -> dict[str, Any]:
    return {"match": ["entra_id", "user_name", "email"], "mapping": MAPPING, "deprovision": deprovision,
            "rules": list(items), **extra}


SALES = {"name": "Sales", "when": {"in_group": "SO Sales"}, "set": {"role": "Sales", "user_plan": "Sales Premium"}}


def entra(n: int, **overrides: Any) -> dict[str, Any]:
    user = {"id": f"e{n}", "userPrincipalName": f"u{n}@contoso.com", "mail": None, "givenName": f"G{n}",
            "accountEnabled": True, "groups": ["SO Sales"], "group_ids": ["g-sales"]}
    return {**user, **overrides}


def so(n: int, **overrides: Any) -> dict[str, Any]:
    """A SuperOffice user that already matches entra(n) under SALES (so the pair is unchanged)."""
    user = {"associate_id": n, "user_name": f"u{n}@contoso.com", "user_type": "InternalAssociate", "retired": False,
            "first_name": f"G{n}", "email": f"u{n}@contoso.com", "role": "Sales", "user_plan": "Sales Premium",
            "secondary_groups": [], "confidential": False}
    return {**user, **overrides}


def plan(entra_users: list[dict[str, Any]], so_users: list[dict[str, Any]], rule_set: dict[str, Any] | None = None,
         links: dict[str, int] | None = None, quarantine: dict[str, str] | None = None) -> Any:
    return reference_plan(entra_users, so_users, REF, rule_set or rules(SALES), links or {}, quarantine or {})


def only(result: Any) -> dict[str, Any]:
    assert len(result.rows) == 1, result.rows
    return result.rows[0]


def nonzero(result: Any) -> dict[str, int]:
    return {k: v for k, v in result.counts.items() if v}


def test_worked_example_reproduces_expected_plan() -> None:
    """The worked example's fixtures plan to expected-plan.jsonl and expected-summary.json exactly."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    superoffice = json.loads((FIXTURES / "superoffice.json").read_text())
    rule_set = yaml.safe_load((FIXTURES / "rules.yaml").read_text())
    result = reference_plan(
        entra_from_fixture(graph), so_from_fixture(superoffice), ref_from_fixture(superoffice), rule_set, {}, {}
    )
    expected = [json.loads(line) for line in (FIXTURES / "expected-plan.jsonl").read_text().splitlines()]
    summary = json.loads((FIXTURES / "expected-summary.json").read_text())
    assert result.rows == expected
    assert result.counts == {k: summary[k] for k in result.counts}


def test_create_in_scope_without_partner() -> None:
    """Row 1: an in-scope user with no partner is created with every non-null field, from null."""
    row = only(plan([entra(1, userPrincipalName=" U1@Contoso.com")], []))
    assert row["action"] == "create"
    assert row["key"] == "u1@contoso.com"
    assert row["associate_id"] is None
    assert row["changes"] == {
        "user_name": {"from": None, "to": " U1@Contoso.com"},
        "first_name": {"from": None, "to": "G1"},
        "email": {"from": None, "to": " U1@Contoso.com"},
        "role": {"from": None, "to": "Sales"},
        "user_plan": {"from": None, "to": "Sales Premium"},
    }


def test_update_when_partner_differs() -> None:
    """Row 2: a matched active partner that differs is updated; a null mapped attribute clears the value."""
    row = only(plan([entra(1, givenName=None)], [so(1, role="User")]))
    assert row["action"] == "update"
    assert row["associate_id"] == 1
    assert row["changes"] == {"first_name": {"from": "G1", "to": None}, "role": {"from": "User", "to": "Sales"}}


def test_unchanged_when_partner_is_the_same() -> None:
    """Row 3: the same values (user_name and email case- and space-insensitively) are unchanged, not listed."""
    result = plan([entra(1)], [so(1, user_name=" U1@CONTOSO.com", email="U1@contoso.com ")])
    assert result.rows == []
    assert nonzero(result) == {"unchanged": 1}


def test_reactivate_a_retired_partner() -> None:
    """Row 4: an in-scope user whose partner is retired is reactivated, with its field changes."""
    row = only(plan([entra(1)], [so(1, retired=True, role="User")]))
    assert row["action"] == "reactivate"
    assert row["changes"] == {"role": {"from": "User", "to": "Sales"}, "active": {"from": False, "to": True}}


@pytest.mark.parametrize(
    ("user", "links", "cause"),
    [
        (entra(1, accountEnabled=False), {}, "disabled"),
        (entra(1, groups=[], group_ids=[]), {}, "out of scope"),
        (None, {"gone-id": 1}, "gone"),
    ],
    ids=["disabled", "out-of-scope", "gone"],
)
def test_retire_when_no_longer_in_scope(user: dict[str, Any] | None, links: dict[str, int], cause: str) -> None:
    """Row 5: a disabled, out-of-scope or gone user's active partner is retired, with a reason and no rules."""
    row = only(plan([user] if user else [], [so(1)], links=links))
    assert row["action"] == "retire"
    assert row["changes"] == {"active": {"from": True, "to": False}}
    assert row["rules"] == []
    assert cause in row["reason"]
    assert row["entra_id"] == (user["id"] if user else "gone-id")
    assert row["key"] == "u1@contoso.com"


def test_deprovision_modes() -> None:
    """Row 5: remove_plan nulls the plan (unchanged without one); ignore leaves the partner unchanged."""
    disabled = entra(1, accountEnabled=False)
    row = only(plan([disabled], [so(1)], rules(SALES, deprovision="remove_plan")))
    assert (row["action"], row["changes"]) == ("retire", {"user_plan": {"from": "Sales Premium", "to": None}})
    assert nonzero(plan([disabled], [so(1, user_plan=None)], rules(SALES, deprovision="remove_plan"))) == {"unchanged": 1}
    assert nonzero(plan([disabled], [so(1)], rules(SALES, deprovision="ignore"))) == {"unchanged": 1}


def test_already_retired_or_no_partner() -> None:
    """Row 6: out of scope with a retired partner is unchanged; with no partner it counts as out_of_scope."""
    disabled = entra(1, accountEnabled=False)
    assert nonzero(plan([disabled], [so(1, retired=True)])) == {"unchanged": 1}
    assert nonzero(plan([disabled], [])) == {"out_of_scope": 1}
    assert nonzero(plan([], [so(1, retired=True)], links={"gone": 1})) == {"unchanged": 1}


def test_quarantine_leaves_partner_untouched() -> None:
    """Row 7: a schema-invalid user is a quarantine row naming its partner; nothing is changed."""
    row = only(plan([entra(1)], [so(1, role="User")], quarantine={"e1": "userPrincipalName: missing"}))
    assert (row["action"], row["associate_id"], row["changes"], row["rules"]) == ("quarantine", 1, {}, ["Sales"])
    assert row["reason"]


def test_unknown_reference_quarantines_only_the_final_value() -> None:
    """Row 7: an unknown final value quarantines; one overwritten by a later rule does not."""
    bad = {"name": "Bad", "when": {"all": True}, "set": {"role": "Nonexistent"}}
    row = only(plan([entra(1)], [], rules(SALES, bad)))
    assert (row["action"], row["rules"]) == ("quarantine", ["Sales", "Bad"])
    assert "Nonexistent" in row["reason"]
    assert only(plan([entra(1)], [], rules(bad, SALES)))["action"] == "create"


def test_conflict_when_two_candidates_or_shared_partner() -> None:
    """Row 8: two candidates, or a partner another user also found, is a conflict; nobody is touched."""
    two = plan([entra(1, mail="shared@contoso.com")], [so(1, user_name="x@contoso.com", email="shared@contoso.com"),
                                                       so(2, user_name="y@contoso.com", email="SHARED@contoso.com")])
    row = only(two)
    assert (row["action"], row["associate_id"], row["changes"]) == ("conflict", None, {})
    shared = plan([entra(1), entra(2)], [so(1)], links={"e2": 1})
    assert [(r["action"], r["associate_id"]) for r in shared.rows] == [("conflict", 1), ("conflict", 1)]
    assert shared.counts["unmanaged"] == 0


def test_quarantine_wins_over_conflict_and_still_matches() -> None:
    """A quarantined user sharing a partner stays quarantine and makes the other user a conflict."""
    result = plan([entra(1), entra(2, mail=" U1@Contoso.com")], [so(1, user_name=None)], quarantine={"e2": "bad"})
    assert {r["entra_id"]: r["action"] for r in result.rows} == {"e1": "conflict", "e2": "quarantine"}


def test_duplicate_upn_is_invalid_even_without_validation() -> None:
    """Two Entra users sharing a UPN (trimmed, case-insensitively) are both quarantined by the planner."""
    result = plan([entra(1), entra(2, userPrincipalName=" U1@Contoso.com")], [so(1)])
    assert [(r["action"], r["associate_id"]) for r in result.rows] == [("quarantine", 1), ("quarantine", 1)]


def test_unmanaged_superoffice_users() -> None:
    """Row 9: SuperOffice users of any type that nobody found or links are counted unmanaged, never touched."""
    system = so(7, user_type="SystemAssociate", user_name="u1@contoso.com")
    result = plan([entra(1)], [system, so(8, user_name="other@contoso.com", email=None)])
    assert [r["action"] for r in result.rows] == ["create"]  # a system user is never a partner
    assert result.counts["unmanaged"] == 2


def test_match_precedence_stops_at_first_key_with_a_partner() -> None:
    """A stored link wins over a UserName match, which wins over an e-mail match."""
    users = [so(1, user_name="old@contoso.com", email=None), so(2, user_name="nobody@contoso.com", email="u1@contoso.com")]
    assert only(plan([entra(1, accountEnabled=False)], [*users, so(3, user_name="U1@contoso.com", email=None)], links={"e1": 1}))["associate_id"] == 1
    assert only(plan([entra(1, accountEnabled=False)], [*users, so(3, user_name="U1@contoso.com", email=None)]))["associate_id"] == 3
    assert only(plan([entra(1, accountEnabled=False)], users))["associate_id"] == 2


def test_scopes_and_disabled_rules() -> None:
    """always overwrites, if_not_set yields to an earlier rule, lists add by default, disabled rules are skipped."""
    rule_set = rules(
        {"name": "A", "when": {"all": True}, "set": {"role": {"value": "User", "scope": "if_not_set"},
                                                     "secondary_groups": ["Sales Sweden"]}},
        {"name": "B", "when": {"in_group": "g-sales"}, "set": {"role": {"value": "Manager", "scope": "if_not_set"},
                                                               "secondary_groups": ["Sales Norway"]}},
        {"name": "C", "when": {"all": True}, "enabled": False, "set": {"role": "Sales"}},
    )
    row = only(plan([entra(1)], [], rule_set))
    assert row["rules"] == ["A", "B"]
    assert row["changes"]["role"]["to"] == "User"
    assert row["changes"]["secondary_groups"]["to"] == ["Sales Norway", "Sales Sweden"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("country = 'NO'", True),
        ("country IN ('SE', 'NO') AND jobTitle LIKE '%Manager%'", True),
        ("jobTitle LIKE 'Manager%'", False),
        ("department LIKE '%HR%' OR country = 'NO'", True),  # NULL LIKE … is NULL, and the parse goes on
        ("department = 'HR'", False),  # NULL → false
        ("NOT department = 'HR'", False),  # NOT NULL is still NULL → false
        ("NOT (department = 'HR' AND country = 'SE')", True),  # NULL AND false = false
        ("department = 'HR' OR country = 'NO'", True),
        ("department IS NULL AND NOT country IS NULL", True),
        ("array_contains(groups, 'SO Sales') AND NOT array_contains(groups, 'HR')", True),
        ("country <> 'NO' OR country NOT IN ('SE')", True),
    ],
)
def test_expression_grammar_three_valued(expr: str, expected: bool) -> None:
    """expr follows SQL three-valued logic; NULL counts as false only in the end."""
    user = {"country": "NO", "jobTitle": "Sales Manager", "department": None, "groups": ["SO Sales"]}
    assert evaluate_expr(expr, user) is expected
