"""Property tests: the vectorised planner (scimflow.plan) agrees with the reference planner on generated tenants.

Each example is a small tenant pair (Entra users with group memberships and UPN case/whitespace
collisions; SuperOffice users of every type, retired ones, near-copies of Entra users), stored links (some
to users gone from Entra), a validation quarantine, and a random rule set (conditions of every supported
kind, elements with random scopes, a deprovision mode). Both planners plan it; actions, keys, ids, rules,
changes, reason presence and the nine counts must agree.

Kept out of the generator on purpose (the contract is silent and each side documents a choice; see the
reference's DECISION notes): empty strings (the fast planner counts "" as null), Entra ids differing only
in case, two gone links to one SuperOffice user, a null ``accountEnabled`` (validation quarantines it),
and two edge cases checked by the targeted tests at the end instead (they once disagreed): links naming a
non-internal SuperOffice user, and a gone user whose partner has no UserName.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scimflow.frames import ENTRA_SCHEMA, SO_SCHEMA, Reference, conform
from scimflow.plan import build_plan
from scimflow.rules import parse_rules
from tests.reference_planner import COUNTS, apply_rules, mapped_fields, reference_plan

GROUPS = {"g-sales": "SO Sales", "g-emp": "Employees", "g-hr": "HR", "g-sup": "SO Support"}
REF = {
    "role": {"User", "Sales", "Manager", "Support"},
    "primary_group": {"Fallback group", "Sales Norway", "Sales Sweden", "Support"},
    "secondary_groups": {"Fallback group", "Sales Norway", "Sales Sweden", "Support"},
    "user_plan": {"Sales Premium", "Service Premium"},
    "owner_company": {"Contoso AS", "Contoso AB"},
}
UNKNOWN = "Ghost"  # a name in no list: quarantines when it is an element's final value
MAPPING = {
    "user_name": "userPrincipalName",
    "first_name": "givenName",
    "last_name": "surname",
    "email": "coalesce(mail, userPrincipalName)",
    "title": "jobTitle",
    "mobile_phone": "mobilePhone",
}
LOCALS = ["kari", "ola", "per", "sara", "anne", "nils", "liv", "tor"]

#: Situations the reference saw across the generated examples (checked by the last test).
SEEN: Counter[str] = Counter()


class _NoAliases(yaml.SafeDumper):
    """Writes a repeated value out again instead of an anchor and alias (rule files refuse aliases)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


# --- strategies ------------------------------------------------------------------------------------------


def variant(upn: str) -> st.SearchStrategy[str]:
    """The same key spelled differently: case and surrounding spaces."""
    return st.sampled_from([upn, upn.upper(), f" {upn}", f"{upn.capitalize()}  ", upn.title()])


ATOMS = [
    "country = 'NO'",
    "country IN ('NO', 'SE')",
    "jobTitle LIKE '%Manager%'",
    "department IS NULL",
    "department = 'Sales'",
    "array_contains(groups, 'HR')",
    "array_contains(groups, 'SO Sales')",
]
# Drawn from precomputed pools: one draw per choice keeps 500 examples fast (Hypothesis draws are not free).
EXPRESSIONS = [
    *ATOMS,
    *(f"NOT ({a})" for a in ATOMS),
    *(f"({a}) {op} ({b})" for a, b in itertools.combinations(ATOMS, 2) for op in ("AND", "OR")),
    *(f"NOT (({a}) AND ({b}))" for a, b in itertools.combinations(ATOMS, 2)),
    *(f"(NOT ({a})) OR ({b})" for a, b in itertools.permutations(ATOMS, 2)),
]
GROUP_REFS: list[Any] = [*GROUPS, *GROUPS.values(), ["SO Sales", "g-hr"], ["HR", "Employees"], ["g-sup"]]
SINGLE_CONDITIONS: list[dict[str, Any]] = [
    {"all": True},
    *({"in_group": g} for g in GROUP_REFS),
    *({"not_in_group": g} for g in GROUP_REFS),
    *({"expr": e} for e in EXPRESSIONS),
]
CONDITIONS = st.one_of(
    st.sampled_from(SINGLE_CONDITIONS),
    st.tuples(st.sampled_from(SINGLE_CONDITIONS), st.sampled_from(SINGLE_CONDITIONS)).map(lambda t: {**t[0], **t[1]}),
)


def _element_settings() -> list[tuple[str, Any]]:
    """(element, value or {value, scope}) pairs, an unknown name among them now and then."""
    pairs: list[tuple[str, Any]] = []
    for element in ("user_plan", "role", "primary_group", "owner_company"):
        for name in sorted(REF[element]):
            pairs += [(element, name), (element, {"value": name, "scope": "always"}),
                      (element, {"value": name, "scope": "if_not_set"})]
        pairs.append((element, UNKNOWN))
    for value in (True, False):
        pairs += [("confidential", value), ("confidential", {"value": value, "scope": "if_not_set"})]
    names = sorted(REF["secondary_groups"])
    for chosen in [*([n] for n in names), names[:2], names[2:]]:
        pairs += [("secondary_groups", chosen)]
        pairs += [("secondary_groups", {"value": chosen, "scope": scope}) for scope in ("always", "if_not_set", "add")]
    pairs.append(("secondary_groups", [UNKNOWN]))
    return pairs


SETTINGS = st.lists(st.sampled_from(_element_settings()), min_size=1, max_size=3, unique_by=lambda p: p[0]).map(dict)


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    rules = []
    for i in range(count):
        rule: dict[str, Any] = {"name": f"Rule {i}", "when": draw(CONDITIONS), "set": draw(SETTINGS)}
        if draw(st.integers(0, 6)) == 0:
            rule["enabled"] = False
        rules.append(rule)
    tail = draw(st.permutations(["user_name", "email"]))
    match = ["entra_id", *tail[: draw(st.integers(0, 2))]]
    return {
        "version": 1,
        "match": match,
        "mapping": MAPPING,
        "deprovision": draw(st.sampled_from(["retire", "remove_plan", "ignore"])),
        "rules": rules,
    }


GROUP_SETS = st.sampled_from(
    [tuple(sorted(c)) for k in range(4) for c in itertools.combinations(sorted(GROUPS), k)]
)
ENTRA_PROFILES = st.sampled_from(
    list(
        itertools.product(
            [True, False],
            ["Nordmann", "Hansen", None],
            ["Sales Manager", "Engineer", "Support Agent", None],
            ["Sales", "HR", None],
            ["NO", "SE", "DK", None],
            [None, "+47 900 00 000"],
            ["none", "same", "alt"],
        )
    )
)
SO_PROFILES = st.sampled_from(
    list(
        itertools.product(
            ["Kari", "Ola", None],
            ["Nordmann", None],
            ["Sales Manager", "Engineer", None],
            [None, *sorted(REF["role"])],
            [None, *sorted(REF["primary_group"])],
            [None, *sorted(REF["owner_company"])],
            [None, *sorted(REF["user_plan"])],
        )
    )
)
SO_GROUP_SETS = st.sampled_from([[], ["Sales Norway"], ["Sales Sweden", "Support"], ["Fallback group"]])
USER_TYPES = st.sampled_from(["InternalAssociate"] * 6 + ["SystemAssociate", "ResourceAssociate", "ExternalAssociate"])


@st.composite
def entra_users(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 6))
    locals_ = draw(st.lists(st.sampled_from(LOCALS), min_size=n, max_size=n, unique=True))
    users = []
    for i, local in enumerate(locals_):
        upn = f"{local}@contoso.com"
        if users and draw(st.integers(0, 7)) == 0:  # a UPN collision in case or whitespace
            upn = draw(variant(draw(st.sampled_from(users))["userPrincipalName"].strip().lower()))
        elif draw(st.integers(0, 3)) == 0:
            upn = draw(variant(upn))
        group_ids = draw(GROUP_SETS)
        given, surname, title, department, country, mobile, mail_kind = draw(ENTRA_PROFILES)
        users.append(
            {
                "id": f"e{i}",
                "userPrincipalName": upn,
                "mail": {"none": None, "same": f"{local}@contoso.com", "alt": f"{local}.alt@contoso.com"}[mail_kind],
                "displayName": local.title(),
                "givenName": local.title() if given else None,
                "surname": surname,
                "jobTitle": title,
                "department": department,
                "country": country,
                "mobilePhone": mobile,
                "accountEnabled": draw(st.integers(0, 4)) > 0,
                "group_ids": list(group_ids),
                "groups": sorted(GROUPS[g] for g in group_ids),
            }
        )
    return users


@st.composite
def so_user(draw: st.DrawFn, associate_id: int, entra: list[dict[str, Any]], rules: dict[str, Any]) -> dict[str, Any]:
    first, last, title, role, primary_group, company, plan = draw(SO_PROFILES)
    base: dict[str, Any] = {
        "associate_id": associate_id,
        "name": f"U{associate_id}",
        "user_type": draw(USER_TYPES),
        "retired": draw(st.integers(0, 3)) == 0,
        "person_id": 100 + associate_id,
        "first_name": first,
        "last_name": last,
        "title": title,
        "mobile_phone": None,
        "role": role,
        "primary_group": primary_group,
        "secondary_groups": draw(SO_GROUP_SETS),
        "owner_company": company,
        "contact_id": None,
        "user_plan": plan,
        "confidential": draw(st.booleans()),
    }
    source = draw(st.sampled_from(entra)) if entra and draw(st.integers(0, 4)) > 0 else None
    if source is None:
        base["user_name"] = f"other{associate_id}@contoso.com"
        base["email"] = draw(st.sampled_from([None, f"other{associate_id}@contoso.com"]))
        return base
    key = source["userPrincipalName"].strip().lower()
    base["user_name"] = draw(st.sampled_from([draw(variant(key)), None, f"other{associate_id}@contoso.com"]))
    base["email"] = draw(st.sampled_from([draw(variant(key)), source["mail"], None]))
    if draw(st.integers(0, 2)) > 0:  # a copy of what the rules would write (unchanged), maybe with one difference
        mirror = {**mapped_fields(rules, source), **apply_rules(rules, source)[1]}
        base.update(mirror)
        base["user_name"] = draw(variant(key))
        if draw(st.booleans()):
            scalar = sorted(k for k in mirror if k not in ("secondary_groups", "confidential"))
            base[draw(st.sampled_from(scalar))] = draw(st.sampled_from([None, "Sales", "Engineer"]))
    return base


@st.composite
def tenants(draw: st.DrawFn) -> dict[str, Any]:
    rules = draw(rule_sets())
    entra = draw(entra_users())
    so = [draw(so_user(i, entra, rules)) for i in range(1, draw(st.integers(0, 6)) + 1)]
    # Links name internal users only (a link is written for a matched pair); see the module docstring.
    ids = [s["associate_id"] for s in so if s["user_type"] == "InternalAssociate"]
    links: dict[str, int] = {}
    for user in entra:
        if ids and draw(st.integers(0, 3)) == 0:
            links[user["id"]] = draw(st.sampled_from([*ids, 99]))  # 99: deleted in SuperOffice
    # A gone user's key is its partner's UserName; without one the planners disagree (see the xfail below).
    named = [s["associate_id"] for s in so if s["user_type"] == "InternalAssociate" and s["user_name"] is not None]
    gone = draw(st.lists(st.sampled_from(named), max_size=2, unique=True)) if named else []
    for i, associate_id in enumerate(gone):
        links[f"gone{i}"] = associate_id
    quarantine = {u["id"]: "failed validation" for u in entra if draw(st.integers(0, 9)) == 0}
    return {"entra": entra, "so": so, "links": links, "quarantine": quarantine, "rules": rules}


# --- running both planners --------------------------------------------------------------------------------


def reference_frame() -> Reference:
    def frame(names: set[str], id_name: str = "id") -> pl.DataFrame:
        values = sorted(names)
        first: list[Any] = list(range(1, len(values) + 1)) if id_name == "id" else [f"lic-{i}" for i in range(len(values))]
        return pl.DataFrame({id_name: first, "name": values})

    return Reference(
        roles=frame(REF["role"]),
        groups=frame(REF["primary_group"]),
        plans=frame(REF["user_plan"], "license"),
        companies=frame(REF["owner_company"]),
    )


def fast_plan(case: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    entra = conform(pl.DataFrame(case["entra"], schema_overrides=dict(ENTRA_SCHEMA), infer_schema_length=None)
                    if case["entra"] else pl.DataFrame(schema=ENTRA_SCHEMA), ENTRA_SCHEMA)
    so = conform(pl.DataFrame(case["so"], schema_overrides=dict(SO_SCHEMA), infer_schema_length=None)
                 if case["so"] else pl.DataFrame(schema=SO_SCHEMA), SO_SCHEMA)
    links = pl.DataFrame(
        {"entra_id": list(case["links"]), "associate_id": list(case["links"].values())},
        schema={"entra_id": pl.String, "associate_id": pl.Int64},
    )
    quarantine = pl.DataFrame(
        {"id": list(case["quarantine"]), "reason": list(case["quarantine"].values())},
        schema={"id": pl.String, "reason": pl.String},
    )
    rules = parse_rules(yaml.dump(case["rules"], Dumper=_NoAliases, sort_keys=False), source="<generated>")
    plan = build_plan(entra, so, reference_frame(), rules, links, quarantine)
    rows = [
        {
            "action": r["action"],
            "key": r["key"],
            "entra_id": r["entra_id"],
            "associate_id": r["associate_id"],
            "rules": list(r["rules"] or []),
            "changes": json.loads(r["changes"]),
            "reason": r["reason"] is not None,
        }
        for r in plan.rows.iter_rows(named=True)
    ]
    return rows, {k: plan.counts[k] for k in COUNTS}


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "reason": r["reason"] is not None} for r in rows]


def table_rows(situations: list[str], counts: dict[str, int]) -> set[str]:
    """Situation-table rows (ARCHITECTURE.md) the reference met in one example."""
    seen = set()
    for s in situations:
        if s in ("create", "update", "unchanged", "reactivate", "quarantine", "conflict", "out_of_scope"):
            seen.add(s)
        elif s.endswith(("-retire", "-ignore", "-no-plan")):
            seen.add("deprovision")
            seen.add(f"deprovision:{s}")
        elif s.endswith("-retired"):
            seen.add("already retired")
    if counts["unmanaged"]:
        seen.add("unmanaged")
    return seen


# derandomize: the same 500 tenants every run, so the situation-coverage check below cannot flake
@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tenants())
def test_fast_planner_agrees_with_reference(case: dict[str, Any]) -> None:
    """On every generated tenant both planners produce the same rows (reason as presence) and counts."""
    ref = {**REF, "secondary_groups": REF["primary_group"]}
    expected = reference_plan(case["entra"], case["so"], ref, case["rules"], case["links"], case["quarantine"])
    SEEN.update(table_rows(expected.situations, expected.counts))
    rows, counts = fast_plan(case)
    assert rows == comparable(expected.rows)
    assert counts == expected.counts


REQUIRED = {
    "create", "update", "unchanged", "reactivate", "deprovision", "already retired", "out_of_scope",
    "quarantine", "conflict", "unmanaged",
    "deprovision:disabled-retire", "deprovision:out-retire", "deprovision:gone-retire",
}


def test_every_situation_row_was_generated() -> None:
    """Every row of the situation table occurred in the generated examples (runs after the property test)."""
    if not SEEN:
        pytest.skip("the property test did not run in this session")
    missing = REQUIRED - set(SEEN)
    assert not missing, f"never generated: {sorted(missing)}; seen: {dict(SEEN)}"


def one_case(**overrides: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "entra": [],
        "so": [],
        "links": {},
        "quarantine": {},
        "rules": {"version": 1, "match": ["entra_id", "user_name", "email"], "mapping": MAPPING,
                  "deprovision": "retire", "rules": [{"name": "All", "when": {"all": True}, "set": {"role": "User"}}]},
    }
    return {**case, **overrides}


def so_row(associate_id: int, **overrides: Any) -> dict[str, Any]:
    row = dict.fromkeys(SO_SCHEMA.names())
    row.update(associate_id=associate_id, user_type="InternalAssociate", retired=False, secondary_groups=[],
               confidential=False, user_name=f"u{associate_id}@contoso.com")
    return {**row, **overrides}


def both(case: dict[str, Any]) -> tuple[Any, Any]:
    expected = reference_plan(case["entra"], case["so"], REF, case["rules"], case["links"], case["quarantine"])
    return fast_plan(case), (comparable(expected.rows), expected.counts)


def test_gone_user_without_user_name_is_keyed_by_entra_id() -> None:
    """A gone user's retire row is keyed by the Entra id when its partner has no UserName ("where no UPN exists")."""
    (rows, _), (expected, _) = both(one_case(so=[so_row(4, user_name=None)], links={"gone-1": 4}))
    assert expected[0]["key"] == "gone-1"
    assert rows == expected


def test_user_named_by_a_link_is_not_unmanaged() -> None:
    """A SuperOffice user that a link names is not unmanaged, whatever its type ("no link names")."""
    system = so_row(7, user_type="SystemAssociate", user_name="sys@contoso.com")
    (_, counts), (_, expected) = both(one_case(so=[system], links={"gone-1": 7}))
    assert expected["unmanaged"] == 0
    assert counts == expected
