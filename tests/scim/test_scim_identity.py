"""Who is who on a SCIM target: ``externalId`` corrected to the Entra object id, a cached SCIM id that is gone,
and the links of a SCIM target through ``links export`` / ``links import``.

Over real sockets: the Graph emulator and the SCIM emulator (scim2-server, each policy) over HTTPS, the real
SQLite state store, the real planner and apply engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.pipeline import open_store
from tests.scim.test_scim_e2e import FIXTURES, KARI, OLA, PER, UNMANAGED, WIDE, Site

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"

#: Kari as Entra's own provisioning job left her: externalId = mailNickname (SuperOffice wants the object id).
KARI_BY_ENTRA_JOB = {
    "schemas": [USER_URN],
    "id": "entra-job-kari",
    "userName": "kari.nordmann@contoso.com",
    "externalId": "kari.nordmann",
    "active": True,
    "name": {"givenName": "Kari", "familyName": "Nordmann"},
}
#: Per with no externalId at all.
PER_WITHOUT_EXTERNAL_ID = {
    "schemas": [USER_URN],
    "id": "entra-job-per",
    "userName": "per.berg@contoso.com",
    "active": True,
    "name": {"givenName": "Per", "familyName": "Berg"},
}


class ScimSite(Site):
    """:class:`Site` plus authorised SCIM requests to the target (out-of-band changes an admin might make)."""

    def scim(self, method: str, path: str, **kw: Any) -> httpx.Response:
        scim = self.config.require_scim()
        headers = {"Authorization": f"Bearer {scim.token.reveal()}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=scim.base_url + "/", verify=self.ctx, timeout=30, headers=headers) as c:
            return c.request(method, path, **kw)

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """A fresh plan's rows by ``(action, key)``, ``changes`` parsed."""
        outcome, _ = self.plan()
        return {
            (r["action"], r["key"]): {**r, "changes": json.loads(r["changes"])}
            for r in outcome.plan.rows.iter_rows(named=True)
        }

    def links(self) -> dict[str, str]:
        with open_store(self.config) as store:
            return dict(store.links(string_ids=True).iter_rows())


def _start(tmp_path: Path, dialect: str, users: list[dict[str, Any]]) -> Any:
    from scimflow.emulators.host import EmulatorHost

    graph = json.loads((FIXTURES / "graph.json").read_text())
    return EmulatorHost(
        graph,
        {},
        tmp_path,
        rules=FIXTURES / "rules.yaml",
        guardrails=WIDE,
        target="scim",
        scim_dialect=dialect,  # type: ignore[arg-type]
        scim_data={"users": users, "groups": []},
    ).start()


@pytest.fixture(params=["rfc", "entra"])
def adopted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScimSite]:
    """Kari and Per already in the SCIM target with a wrong or missing externalId, and an unmanaged user."""
    from scimflow.connectors.graph import clear_app_cache

    host = _start(tmp_path, request.param, [KARI_BY_ENTRA_JOB, PER_WITHOUT_EXTERNAL_ID, UNMANAGED])
    try:
        yield ScimSite(host, tmp_path)
    finally:
        clear_app_cache()
        host.stop()


def _external_ids(site: ScimSite) -> dict[str, str | None]:
    return {u["userName"].lower(): u.get("externalId") for u in site.snapshot()["users"]}


def test_external_id_is_corrected_to_the_entra_object_id(adopted: ScimSite) -> None:
    """Users matched by userName with a wrong or missing externalId get the Entra object id (only where it
    differs; an unmanaged user is never touched); a later drift of one externalId is an update of that alone;
    each apply converges to a re-plan of 0."""
    rows = adopted.rows()
    kari = rows[("update", "kari.nordmann@contoso.com")]
    assert kari["associate_id"] == "entra-job-kari"
    assert kari["changes"]["entra_id"] == {"from": "kari.nordmann", "to": KARI}
    assert rows[("update", "per.berg@contoso.com")]["changes"]["entra_id"] == {"from": None, "to": PER}
    assert rows[("create", "ola.hansen@contoso.com")]["entra_id"] == OLA  # a create sends it anyway
    adopted.sync()  # applies, then checks a re-plan shows no change
    ids = _external_ids(adopted)
    assert ids["kari.nordmann@contoso.com"] == KARI and ids["per.berg@contoso.com"] == PER
    assert ids["ola.hansen@contoso.com"] == OLA
    assert ids["service.desk@contoso.com"] is None  # unmanaged: untouched
    assert adopted.links()[KARI] == "entra-job-kari"

    # Somebody changes Kari's externalId in the target: she is otherwise converged, linked, in scope.
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
             "Operations": [{"op": "replace", "path": "externalId", "value": "kari.nordmann"}]}  # fmt: skip
    assert adopted.scim("PATCH", "Users/entra-job-kari", json=patch).status_code in (200, 204)
    rows = adopted.rows()
    assert list(rows) == [("update", "kari.nordmann@contoso.com")]
    assert rows[("update", "kari.nordmann@contoso.com")]["changes"] == {
        "entra_id": {"from": "kari.nordmann", "to": KARI}
    }
    counts = adopted.sync()
    assert counts["update"] == 1 and counts["unchanged"] == 2
    assert _external_ids(adopted)["kari.nordmann@contoso.com"] == KARI


def test_external_id_fix_only_where_the_user_is_managed_in_scope(tmp_path: Path) -> None:
    """The planner adds the externalId fix to in-scope matched users only: a user out of scope under
    ``deprovision: ignore``, a leaver already deactivated and an unmanaged user keep theirs untouched."""
    from scimflow.plan import frames_from_fixtures, plan_scim
    from scimflow.rules import load_rules
    from tests.test_plan_scim import KARI_VALUES, SARA, _frames, _rows, _user

    graph = json.loads((FIXTURES / "graph.json").read_text())
    frame, _, _ = frames_from_fixtures(graph, json.loads((FIXTURES / "superoffice.json").read_text()))
    path = tmp_path / "rules.yaml"
    path.write_text((FIXTURES / "rules.yaml").read_text().replace("deprovision: retire", "deprovision: ignore"))
    kari = _user("k1", KARI_VALUES)  # converged but for its missing externalId, matched by userName
    sara = _user("s1", {"user_name": "sara.lind@contoso.com", "role": "User"}, entra_id="sara.lind")  # disabled
    stray = _user("x1", {"user_name": "nobody@contoso.com"}, entra_id="wrong")
    plan = plan_scim(frame, *_frames(kari, sara, stray), load_rules(path))
    rows = _rows(plan)
    assert rows[("update", "kari.nordmann@contoso.com")]["changes"] == {"entra_id": {"from": None, "to": KARI}}
    assert not any(key in ("sara.lind@contoso.com", "nobody@contoso.com") for _, key in rows)
    assert plan.counts["update"] == 1 and plan.counts["unmanaged"] == 1
    assert SARA not in {r["entra_id"] for r in rows.values()}

    retired = _user("s1", {"user_name": "sara.lind@contoso.com", "role": "User"}, entra_id=None, active=False)
    converged = _user("k1", KARI_VALUES, entra_id=KARI)
    plan = plan_scim(frame, *_frames(converged, retired), load_rules(FIXTURES / "rules.yaml"))
    assert plan.rows.filter(plan.rows["key"] == "kari.nordmann@contoso.com").is_empty()
    assert plan.rows.filter(plan.rows["key"] == "sara.lind@contoso.com").is_empty()


@pytest.mark.parametrize(
    ("dialect", "op"),
    [
        ("entra", {"op": "Replace", "path": "externalId", "value": KARI}),
        ("rfc", {"op": "replace", "path": "externalId", "value": KARI}),
    ],
    ids=["entra", "rfc"],
)
def test_external_id_patch_per_dialect(dialect: str, op: dict[str, Any]) -> None:
    """entra: Entra's ``Replace`` of the changed attribute (reference §2); rfc: a JSON Patch ``replace``."""
    from scimflow.connectors.scim._mapping import user_patch_ops

    assert user_patch_ops({"entra_id": KARI}, {"entra_id": None}, dialect) == [op]  # type: ignore[arg-type]


@pytest.fixture(params=["rfc", "entra"])
def pushed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScimSite]:
    """The worked example pushed to an (otherwise empty but for an unmanaged user) SCIM target: links stored."""
    from scimflow.connectors.graph import clear_app_cache

    host = _start(tmp_path, request.param, [UNMANAGED])
    try:
        site = ScimSite(host, tmp_path)
        site.sync()
        yield site
    finally:
        clear_app_cache()
        host.stop()


def _recreate(site: ScimSite, entra_id: str) -> tuple[str, str]:
    """Delete the SCIM user of ``entra_id`` and create it again as it was (same userName, attributes and
    computed groups: as after a wipe of the gateway's DB and a push by someone else); ``(old id, new id)``."""
    snap = site.snapshot()
    (user,) = [u for u in snap["users"] if u.get("externalId") == entra_id]
    old = user["id"]
    assert site.scim("DELETE", f"Users/{old}").status_code == 204
    assert site.scim("GET", f"Users/{old}").status_code == 404
    body = {k: v for k, v in user.items() if k not in ("id", "meta")}
    made = site.scim("POST", "Users", json=body)
    assert made.status_code == 201, made.text
    new = str(made.json()["id"])
    for group in snap["groups"]:
        if any(m.get("value") == old for m in group.get("members") or []):
            add = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "add", "path": "members", "value": [{"value": new}]}]}  # fmt: skip
            assert site.scim("PATCH", f"Groups/{group['id']}", json=add).status_code in (200, 204)
    return old, new


def test_a_cached_id_gone_at_the_apply_is_rematched_and_relinked(pushed: ScimSite) -> None:
    """Planned against the cached SCIM id, which is gone (404) when the apply re-reads it: the row is re-matched
    by userName and applied to the user found, the link then holds the new id, and a re-plan shows 0."""
    from scimflow.apply import apply_plan

    assert PER in pushed.links()  # stored by the push
    with pushed.graph() as g:
        g.patch(f"/_emulator/users/{PER}", json={"jobTitle": "HR Partner"}).raise_for_status()
    outcome, entra = pushed.plan()
    (row,) = outcome.plan.rows.to_dicts()
    assert row["action"] == "update" and row["entra_id"] == PER
    old, new = _recreate(pushed, PER)
    assert row["associate_id"] == old
    with open_store(pushed.config) as store:
        report = apply_plan(pushed.config, store, outcome.out, outcome.plan_hash,
                            matched_pairs=outcome.plan.matched_pairs, entra_frame=entra.frame,
                            entra_links=entra.links)  # fmt: skip
    assert (report.applied, report.drifted, report.failed, report.verified) == (1, 0, 0, 1), report.rows
    users = {u["id"]: u for u in pushed.snapshot()["users"]}
    assert old not in users and users[new]["title"] == "HR Partner"
    assert pushed.links()[PER] == new
    again, _ = pushed.plan()
    assert again.plan.rows.is_empty(), again.plan.rows.to_dicts()


def test_a_cached_id_gone_and_not_found_again_stays_held_as_gone(pushed: ScimSite) -> None:
    """The cached id answers 404 and neither userName nor externalId finds a user: the row is drifted (gone)."""
    from scimflow.apply import apply_plan

    with pushed.graph() as g:
        g.patch(f"/_emulator/users/{PER}", json={"jobTitle": "HR Partner"}).raise_for_status()
    outcome, entra = pushed.plan()
    (row,) = outcome.plan.rows.to_dicts()
    assert pushed.scim("DELETE", f"Users/{row['associate_id']}").status_code == 204
    with open_store(pushed.config) as store:
        report = apply_plan(pushed.config, store, outcome.out, outcome.plan_hash,
                            matched_pairs=outcome.plan.matched_pairs, entra_frame=entra.frame,
                            entra_links=entra.links)  # fmt: skip
    assert (report.applied, report.drifted) == (0, 1)
    assert "gone from the target" in (report.rows[0].detail or "")
    assert pushed.links()[PER] == row["associate_id"]
