"""A SCIM target end to end, without Prefect: Graph and SCIM emulators over HTTPS, plan, apply, re-plan.

Per dialect (``rfc`` against scim2-server's strict policy, ``entra`` against its Entra-tolerant one): an
initial push, a night of updates, a leaver deactivated, a returning user reactivated with the same computed
groups, an unmanaged SCIM user never touched, and a re-plan that shows 0 changes after each apply. The
final server state is checked resource by resource against what the rules give.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.apply import apply_plan
from scimflow.computed_groups import groups_for
from scimflow.config import load_config
from scimflow.pipeline import open_store, run_plan_stages

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WIDE = {"max_retire": "100%", "max_changes": 500, "min_source_users": 1}
KARI = "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001"
OLA = "6f1c0002-2b3a-4c5d-9e8f-0a1b2c3d0002"
PER = "6f1c0004-2b3a-4c5d-9e8f-0a1b2c3d0004"

#: An account somebody made by hand in the SCIM service: no Entra user matches it, no link names it.
UNMANAGED = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "id": "hand-made-1",
    "userName": "service.desk@contoso.com",
    "active": True,
    "name": {"givenName": "Service", "familyName": "Desk"},
}

#: What the worked example's rules give each in-scope user: mapped fields and element values.
EXPECTED: dict[str, dict[str, Any]] = {
    KARI: {
        "userName": "kari.nordmann@contoso.com",
        "givenName": "Kari",
        "familyName": "Nordmann",
        "email": "kari.nordmann@contoso.com",
        "title": "Sales Manager",
        "elements": {
            "role": "Manager",
            "primary_group": "Fallback group",
            "owner_company": "Contoso AS",
            "user_plan": "Sales Premium",
            "secondary_groups": ["Sales Norway"],
        },
    },
    OLA: {
        "userName": "Ola.Hansen@contoso.com",
        "givenName": "Ola",
        "familyName": "Hansen",
        "email": "ola.hansen@contoso.com",
        "title": "Account Executive",
        "elements": {
            "role": "Sales",
            "primary_group": "Fallback group",
            "owner_company": "Contoso AS",
            "user_plan": "Sales Premium",
            "secondary_groups": ["Sales Norway"],
        },
    },
    PER: {
        "userName": "per.berg@contoso.com",
        "givenName": "Per",
        "familyName": "Berg",
        "email": "per.berg@contoso.com",
        "title": "HR Advisor",
        "elements": {"role": "User", "primary_group": "Fallback group", "owner_company": "Contoso AS"},
    },
}


class Site:
    """The emulators of one test and the sync steps a scheduled run takes."""

    def __init__(self, host: Any, folder: Path) -> None:
        self.host = host
        self.folder = folder
        self.config = load_config(host.config_path)
        self.ctx = ssl.create_default_context(cafile=str(host.ca_bundle))
        self.runs = 0

    def graph(self) -> httpx.Client:
        return httpx.Client(base_url=self.host.graph_origin, verify=self.ctx, timeout=30)

    def snapshot(self) -> dict[str, Any]:
        with httpx.Client(base_url=self.host.target_origin, verify=self.ctx, timeout=30) as c:
            return c.get("/_emulator/snapshot").json()

    def plan(self) -> tuple[Any, Any]:
        self.runs += 1
        outcome, entra, _ = run_plan_stages(self.config, out=self.folder / f"plan-{self.runs}")
        return outcome, entra

    def sync(self) -> dict[str, int]:
        """Plan, apply the whole plan (as an approval would), then check a re-plan shows no change."""
        outcome, entra = self.plan()
        with open_store(self.config) as store:
            report = apply_plan(
                self.config,
                store,
                outcome.out,
                outcome.plan_hash,
                matched_pairs=outcome.plan.matched_pairs,
                entra_frame=entra.frame,
                entra_links=entra.links,
            )
        assert report.failed == 0 and report.drifted == 0, report.rows
        assert report.verified == report.planned, report.rows
        again, _ = self.plan()
        assert again.plan.rows.is_empty(), again.plan.rows.to_dicts()
        return {k: int(v) for k, v in outcome.summary.items() if isinstance(v, int)}


@pytest.fixture(params=["rfc", "entra"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    from scimflow.connectors.graph import clear_app_cache
    from scimflow.emulators.host import EmulatorHost

    graph = json.loads((FIXTURES / "graph.json").read_text())
    host = EmulatorHost(
        graph,
        {},
        tmp_path,
        rules=FIXTURES / "rules.yaml",
        guardrails=WIDE,
        target="scim",
        scim_dialect=request.param,
        scim_data={"users": [UNMANAGED], "groups": []},
    ).start()
    try:
        yield Site(host, tmp_path)
    finally:
        clear_app_cache()
        host.stop()


def _users(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u.get("externalId") or u["id"]: u for u in snapshot["users"]}


def _groups_of(snapshot: dict[str, Any], user_id: str) -> set[str]:
    return {
        g["displayName"] for g in snapshot["groups"] if any(m.get("value") == user_id for m in g.get("members") or [])
    }


def _check_user(snapshot: dict[str, Any], entra_id: str, expected: dict[str, Any], *, active: bool) -> None:
    user = _users(snapshot)[entra_id]
    assert user["userName"] == expected["userName"]
    assert user["active"] is active
    assert user["name"]["givenName"] == expected["givenName"]
    assert user["name"]["familyName"] == expected["familyName"]
    assert user["name"]["formatted"] == f"{expected['givenName']} {expected['familyName']}"
    assert [e["value"] for e in user["emails"]] == [expected["email"]]
    assert user["emails"][0]["type"] == "work" and user["emails"][0]["primary"] is True
    assert user["title"] == expected["title"]
    assert user["displayName"] == f"{expected['givenName']} {expected['familyName']}"  # Entra's displayName
    assert _groups_of(snapshot, user["id"]) == groups_for("scimflow", expected["elements"])


def test_worked_example_lifecycle_converges(site: Site) -> None:
    """Push, a night of changes, a leaver, a return: each apply converges, the server holds what the rules give."""
    first = site.sync()
    assert (first["create"], first["create_group"], first["members_added"]) == (3, 7, 13)
    snap = site.snapshot()
    for entra_id, expected in EXPECTED.items():
        _check_user(snap, entra_id, expected, active=True)
    assert _users(snap)["hand-made-1"] == {**UNMANAGED, "meta": _users(snap)["hand-made-1"]["meta"]}
    assert "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003" not in _users(snap)  # disabled in Entra: never created

    # a night: Kari is no longer a manager, Per gets a new title
    with site.graph() as g:
        g.patch(f"/_emulator/users/{KARI}", json={"jobTitle": "Sales Lead"}).raise_for_status()
        g.patch(f"/_emulator/users/{PER}", json={"jobTitle": "HR Partner"}).raise_for_status()
    night = site.sync()
    assert night["update"] == 2 and night["members_removed"] == 1
    kari = {**EXPECTED[KARI], "title": "Sales Lead", "elements": {**EXPECTED[KARI]["elements"], "role": "Sales"}}
    per = {**EXPECTED[PER], "title": "HR Partner"}
    snap = site.snapshot()
    _check_user(snap, KARI, kari, active=True)
    _check_user(snap, PER, per, active=True)

    # a leaver: deactivated, memberships kept
    with site.graph() as g:
        g.patch(f"/_emulator/users/{OLA}", json={"accountEnabled": False}).raise_for_status()
    leave = site.sync()
    assert leave["retire"] == 1 and leave["members_removed"] == 0
    snap = site.snapshot()
    _check_user(snap, OLA, EXPECTED[OLA], active=False)

    # the return: reactivated, with the same computed groups it had
    with site.graph() as g:
        g.patch(f"/_emulator/users/{OLA}", json={"accountEnabled": True}).raise_for_status()
    back = site.sync()
    assert back["reactivate"] == 1 and back["members_added"] == 0
    snap = site.snapshot()
    _check_user(snap, OLA, EXPECTED[OLA], active=True)
    _check_user(snap, KARI, kari, active=True)
    _check_user(snap, PER, per, active=True)
    assert _users(snap)["hand-made-1"]["userName"] == UNMANAGED["userName"]  # never touched
    assert _groups_of(snap, "hand-made-1") == set()
    assert len(snap["users"]) == 4
