"""Computed groups: naming, parsing, and the IMG rules an admin enters once (scimflow.computed_groups)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scimflow.computed_groups import (
    group_name,
    groups_for,
    img_rules,
    parse_group_name,
    rule_values,
    values_from_groups,
)
from scimflow.rules import load_rules, parse_rules

FIXTURES = Path(__file__).parent / "fixtures"

RULES = """
version: 1
rules:
  - name: Everyone
    when: {all: true}
    set: {primary_group: Fallback group, role: {value: User, scope: if_not_set}}
  - name: Sales
    when: {in_group: SO Sales}
    set: {role: Sales, user_plan: Sales Premium, secondary_groups: [Sales Norway, "Key: accounts"]}
  - name: Contractors
    when: {in_group: Contractors}
    set: {confidential: true}
  - name: Off
    when: {all: true}
    enabled: false
    set: {role: Never}
"""


def test_names_round_trip() -> None:
    """Every element value's group name parses back to the same element and value, colons in names included."""
    for element, value in [
        ("role", "Sales"),
        ("secondary_groups", "Key: accounts"),
        ("confidential", True),
        ("confidential", False),
        ("owner_company", "Contoso AS"),
    ]:
        name = group_name("scimflow", element, value)
        assert parse_group_name("scimflow", name) == (element, value)
    assert group_name("scimflow", "role", "Sales") == "scimflow:role:Sales"
    assert group_name("acme", "confidential", True) == "acme:confidential:true"


@pytest.mark.parametrize(
    "name",
    [
        "SO Sales",
        "scimflow:",
        "scimflow:role",
        "scimflow:role:",
        "scimflow:colour:red",
        "scimflow:confidential:yes",
        "other:role:Sales",
    ],
    ids=["plain", "prefix-only", "no-value", "empty-value", "unknown-element", "bad-flag", "other-prefix"],
)
def test_other_groups_are_not_computed(name: str) -> None:
    """Groups that are not scimflow's computed groups parse to None (they are left alone)."""
    assert parse_group_name("scimflow", name) is None


def test_groups_and_values_are_inverse() -> None:
    """A user's element values become its groups and read back from them; unset elements have no group."""
    values = {"role": "Sales", "primary_group": "Fallback group", "secondary_groups": ["B", "A"], "confidential": False}
    groups = groups_for("p", values)
    assert groups == {
        "p:role:Sales",
        "p:primary_group:Fallback group",
        "p:secondary_groups:A",
        "p:secondary_groups:B",
        "p:confidential:false",
    }
    back = values_from_groups("p", [*groups, "Unrelated group"])
    assert back == {
        "user_plan": None,
        "role": "Sales",
        "primary_group": "Fallback group",
        "secondary_groups": ["A", "B"],
        "owner_company": None,
        "confidential": False,
    }


def test_two_groups_for_one_element_read_as_neither() -> None:
    """A half-done change (two role groups) reads as a value no rule gives, so the planner fixes it."""
    back = values_from_groups("p", ["p:role:Sales", "p:role:Manager"])
    assert back["role"] == "Manager, Sales"


def test_img_rules_list_every_value_of_enabled_rules() -> None:
    """One IMG rule per (element, value) that an enabled rule can set, naming the rules that set it."""
    ruleset = parse_rules(RULES)
    assert rule_values(ruleset)["role"] == ["User", "Sales"]
    listed = img_rules(ruleset, "scimflow")
    assert [(r.group, r.label, r.value, r.rules) for r in listed] == [
        ("scimflow:user_plan:Sales Premium", "User plan", "Sales Premium", ["Sales"]),
        ("scimflow:role:User", "Role", "User", ["Everyone"]),
        ("scimflow:role:Sales", "Role", "Sales", ["Sales"]),
        ("scimflow:primary_group:Fallback group", "Primary group", "Fallback group", ["Everyone"]),
        ("scimflow:secondary_groups:Sales Norway", "Secondary group", "Sales Norway", ["Sales"]),
        ("scimflow:secondary_groups:Key: accounts", "Secondary group", "Key: accounts", ["Sales"]),
        ("scimflow:confidential:true", "Confidential", True, ["Contractors"]),
    ]


def test_img_rules_command_prints_a_table_and_json(tmp_path: Path) -> None:
    """`scimflow scim img-rules` prints every rule as a table, and as JSON with --json."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    base = [sys.executable, "-m", "scimflow", "scim", "img-rules", "--rules", str(rules)]
    table = subprocess.run(base, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "scimflow:role:Sales" in table and "Sales Premium" in table and "7 rules" in table
    out = subprocess.run([*base, "--json", "--prefix", "acme"], capture_output=True, text=True, timeout=60, check=True)
    data = json.loads(out.stdout)
    assert len(data) == 7
    assert data[2] == {
        "name": "acme:role:Sales",
        "scope": "in_group",
        "group": "acme:role:Sales",
        "set": {"element": "Role", "value": "Sales"},
        "scimflow_element": "role",
        "from_rules": ["Sales"],
    }


def test_img_rules_command_refuses_a_bad_rule_set(tmp_path: Path) -> None:
    """A rule file with an error exits 1 naming the file."""
    rules = tmp_path / "bad.yaml"
    rules.write_text("version: 1\nrules: []\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "scimflow", "scim", "img-rules", "--rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "bad.yaml" in out.stderr


def test_worked_example_rules_have_img_rules() -> None:
    """The worked example's rule set gives one IMG rule for each of its element values."""
    listed = img_rules(load_rules(FIXTURES / "rules.yaml"), "scimflow")
    assert {r.group for r in listed} >= {"scimflow:role:Sales", "scimflow:primary_group:Fallback group"}
