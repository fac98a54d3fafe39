"""Generated tenants: deterministic, in the fixture formats, realistic enough, and fast."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import polars as pl
import pytest

from scimflow.emulators.generate import GROUP_NAMES, generate_tenant
from scimflow.frames import ENTRA_SCHEMA, GRAPH_USER_FIELDS, conform

RULE_GROUPS = ("Employees", "SO Sales", "Sales Oslo", "SO Support", "SO Marketing", "Managers", "Contractors", "HR")


@pytest.fixture(scope="module")
def tenant() -> tuple[dict[str, Any], dict[str, Any]]:
    """A 2,000-user tenant, seed 5."""
    return generate_tenant(2000, seed=5)


def _transitive(groups: list[dict[str, Any]], name: str) -> set[str]:
    by_id = {g["id"]: g for g in groups}
    start = next(g for g in groups if g["displayName"] == name)
    out: set[str] = set()
    todo = [start]
    while todo:
        g = todo.pop()
        for m in g["members"]:
            if m in by_id:
                todo.append(by_id[m])
            else:
                out.add(m)
    return out


def test_deterministic_per_seed() -> None:
    """The same seed gives byte-identical tenants; another seed gives another tenant."""
    a = json.dumps(generate_tenant(300, seed=1), sort_keys=True)
    b = json.dumps(generate_tenant(300, seed=1), sort_keys=True)
    c = json.dumps(generate_tenant(300, seed=2), sort_keys=True)
    assert a == b
    assert a != c


def test_graph_shape(tenant: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Graph users carry the selected fields, have unique ids and case-insensitively unique UPNs, and conform to the frame."""
    graph, _ = tenant
    users = graph["users"]
    assert len(users) == 2000
    assert all(set(u) <= set(GRAPH_USER_FIELDS) for u in users)
    assert len({u["id"] for u in users}) == 2000
    assert len({u["userPrincipalName"].lower() for u in users}) == 2000
    assert all(u["userPrincipalName"].isascii() for u in users)
    assert any(not u["displayName"].isascii() for u in users)  # Nordic letters in names
    assert any(not u["accountEnabled"] for u in users)
    assert any("Manager" in (u["jobTitle"] or "") for u in users)
    assert any(u["mail"] is None for u in users)
    frame = conform(pl.DataFrame(users, infer_schema_length=None), ENTRA_SCHEMA)
    assert frame.height == 2000
    assert frame.get_column("businessPhones").dtype == pl.List(pl.String)


def test_groups_nest_and_cover_the_rules(tenant: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The default rules' groups exist, SO Sales contains Sales Oslo, and every employee is in Employees."""
    graph, _ = tenant
    groups = graph["groups"]
    names = [g["displayName"] for g in groups]
    assert set(RULE_GROUPS) <= set(names)
    assert tuple(names) == GROUP_NAMES
    assert 8 <= len(groups) <= 12
    by_name = {g["displayName"]: g for g in groups}
    assert by_name["Sales Oslo"]["id"] in by_name["SO Sales"]["members"]
    assert _transitive(groups, "Sales Oslo") <= _transitive(groups, "SO Sales")
    employees = {u["id"] for u in graph["users"] if u["employeeType"] == "Employee"}
    assert set(by_name["Employees"]["members"]) == employees
    assert _transitive(groups, "All Staff") == {u["id"] for u in graph["users"]}
    ids = {u["id"] for u in graph["users"]} | {g["id"] for g in groups}
    assert all(m in ids for g in groups for m in g["members"])


def test_superoffice_shape_and_situations(tenant: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """SuperOffice users cover identical, differing, retired, e-mail-only and partnerless users plus one system user."""
    graph, so = tenant
    assert [r["Value"] for r in so["roles"]] == ["Administrator", "Sales", "Support", "Manager", "User"]
    assert "superlicense-no-selection" in {p["Name"] for p in so["userplans"]}
    assert {"usergroups", "contacts"} <= set(so)
    users = so["users"]
    assert len({u["AssociateId"] for u in users}) == len(users)
    assert len({u["Name"] for u in users}) == len(users)
    types = Counter(u["Type"] for u in users)
    assert types["SystemAssociate"] == 1
    upns = {u["userPrincipalName"].lower(): u for u in graph["users"]}
    mails = {u["mail"]: u for u in graph["users"] if u["mail"]}
    kinds: Counter[str] = Counter()
    for u in users:
        if u["Type"] != "InternalAssociate":
            continue
        person = u["Person"]
        assert set(person) == {"PersonId", "Firstname", "Lastname", "Email", "Title", "MobilePhone", "ContactId"}
        plan_lics = u["LicenseOwners"][0]["RestrictedModuleLicenses"]
        assert all(lic["Assigned"] for lic in plan_lics)
        partner = upns.get(u["UserName"].lower())
        if u["Deleted"]:
            kinds["retired"] += 1
        elif partner is None and person["Email"] in mails:
            kinds["email_only"] += 1
        elif partner is None:
            kinds["no_partner"] += 1
        elif (person["Title"], person["Lastname"], person["MobilePhone"]) == (
            partner["jobTitle"],
            partner["surname"],
            partner["mobilePhone"],
        ):
            kinds["identical"] += 1
        else:
            kinds["differing"] += 1
    assert all(kinds[k] > 0 for k in ("retired", "email_only", "no_partner", "identical", "differing")), kinds


def test_invalid_arguments() -> None:
    """Negative sizes and fractions out of range are refused, naming the argument."""
    with pytest.raises(ValueError, match="users"):
        generate_tenant(-1)
    with pytest.raises(ValueError, match="matched_fraction"):
        generate_tenant(10, matched_fraction=1.5)


def test_tiny_tenants() -> None:
    """Zero and one user still give valid, complete fixtures."""
    for n in (0, 1):
        graph, so = generate_tenant(n)
        assert len(graph["users"]) == n
        assert len(graph["groups"]) == len(GROUP_NAMES)
        assert any(u["Type"] == "SystemAssociate" for u in so["users"])


def test_real_emulators_accept_generated_tenants() -> None:
    """The Graph and SuperOffice emulators load a generated tenant and snapshot it back unchanged."""
    graph_mod = pytest.importorskip("scimflow.emulators.graph")
    so_mod = pytest.importorskip("scimflow.emulators.superoffice")
    graph, so = generate_tenant(200, seed=9)
    assert graph_mod.GraphEmulator(graph, graph_mod.GraphEmulatorSettings()).snapshot() == graph
    assert so_mod.SuperOfficeEmulator(so, so_mod.SuperOfficeEmulatorSettings()).snapshot() == so


def test_100k_users_in_a_few_seconds() -> None:
    """100,000 users generate in a few seconds (the per-user work is vectorised)."""
    t0 = time.perf_counter()
    graph, so = generate_tenant(100_000, seed=1)
    elapsed = time.perf_counter() - t0
    assert len(graph["users"]) == 100_000
    assert len(so["users"]) > 20_000
    assert elapsed < 15, f"{elapsed:.1f} s"
