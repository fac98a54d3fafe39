"""The planner's keys and set comparison: a mapped user_name that is not the UPN, and SuperOffice group lists."""

from __future__ import annotations

import json

import polars as pl
import pytest
from helpers_frames import entra, reference, so

from scimflow.plan import build_plan, plan_lines
from scimflow.rules import parse_rules

RULES = """\
version: 1
match: [entra_id, user_name, email]
mapping:
  user_name: {user_name}
  first_name: givenName
  email: coalesce(mail, userPrincipalName)
deprovision: retire
rules:
  - name: Staff
    when: {{in_group: Staff}}
    set:
      role: User
      secondary_groups: [Sales Norway, Support]
"""


def _user(n: int, **kw: object) -> dict[str, object]:
    user: dict[str, object] = {
        "id": f"e{n}",
        "userPrincipalName": f"user{n}@x.com",
        "givenName": f"First{n}",
        "mail": f"user{n}@x.com",
        "groups": ["Staff"],
    }
    user.update(kw)
    return user


def _rows(entra_users: list[dict[str, object]], so_users: list[dict[str, object]], user_name: str) -> dict[str, dict]:
    rules = parse_rules(RULES.format(user_name=user_name), source="keys.yaml")
    links = pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.Int64})
    plan = build_plan(entra(*entra_users), so(*so_users), reference(), rules, links)
    return {r["entra_id"]: r for r in (json.loads(line) for line in plan_lines(plan.rows))}


def test_mapped_user_name_shared_by_two_users_quarantines_both():
    """With user_name mapped from mail, two users whose mail differs only by case and spaces are quarantined."""
    users = [_user(1, mail="Shared@x.com"), _user(2, mail=" shared@X.com ")]
    rows = _rows(users, [], "mail")
    assert {r["action"] for r in rows.values()} == {"quarantine"}
    for r in rows.values():
        assert r["reason"] == "mapped user_name 'shared@x.com' is shared by more than one Entra user"


@pytest.mark.parametrize("user_name", ["userPrincipalName", "mail"], ids=["upn", "mail"])
def test_shared_upn_is_named_once(user_name):
    """Users sharing a UPN (case and spaces aside) get the UPN reason only, whichever field user_name maps."""
    users = [_user(1, userPrincipalName="Same@x.com", mail="same@x.com"), _user(2, userPrincipalName=" same@x.com")]
    rows = _rows(users, [], user_name)
    assert {r["action"] for r in rows.values()} == {"quarantine"}
    for r in rows.values():
        assert r["reason"] == "userPrincipalName 'same@x.com' is shared by more than one Entra user"


@pytest.mark.parametrize(
    ("so_groups", "action"),
    [
        (["Support", "Sales Norway", "Support"], "unchanged"),
        (["Sales Norway"], "update"),
        (None, "update"),
    ],
    ids=["repeats-unsorted", "one-missing", "null"],
)
def test_secondary_groups_compare_as_sets(so_groups, action):
    """SuperOffice's group list is compared with the rules' as a set: order and repeats are no change."""
    partner = {"associate_id": 101, "user_name": "user1@x.com", "first_name": "First1", "email": "user1@x.com"}
    partner |= {"role": "User", "secondary_groups": so_groups}
    rows = _rows([_user(1)], [partner], "userPrincipalName")
    if action == "unchanged":
        assert rows == {}
        return
    assert rows["e1"]["action"] == action
    assert rows["e1"]["changes"]["secondary_groups"]["to"] == ["Sales Norway", "Support"]
