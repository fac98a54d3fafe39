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


def test_external_id_compared_with_the_entra_id_as_graph_gives_it() -> None:
    """A link stored with another case than Graph's id still pairs; an externalId equal to Graph's id is left
    alone, one differing only in case is set to Graph's id exactly."""
    import polars as pl

    from scimflow.plan import frames_from_fixtures, plan_scim
    from scimflow.rules import load_rules
    from tests.test_plan_scim import KARI_VALUES, _frames, _rows, _user

    graph = json.loads((FIXTURES / "graph.json").read_text())
    frame, _, _ = frames_from_fixtures(graph, json.loads((FIXTURES / "superoffice.json").read_text()))
    links = pl.DataFrame({"entra_id": [f" {KARI.upper()} "], "associate_id": ["k1"]})
    rules = load_rules(FIXTURES / "rules.yaml")
    same = plan_scim(frame, *_frames(_user("k1", KARI_VALUES, entra_id=KARI)), rules, links)
    assert same.rows.filter(pl.col("key") == "kari.nordmann@contoso.com").is_empty()
    upper = plan_scim(frame, *_frames(_user("k1", KARI_VALUES, entra_id=KARI.upper())), rules, links)
    rows = _rows(upper)
    assert rows[("update", "kari.nordmann@contoso.com")]["changes"] == {"entra_id": {"from": KARI.upper(), "to": KARI}}


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


def _links_config(folder: Path, target: str) -> Path:
    """A config of ``target`` whose file: secrets never need to resolve (links commands open the store only)."""
    import yaml

    cfg: dict[str, Any] = {
        "entra": {"tenant_id": "t", "client_id": "c", "client_secret": "file:x"},
        "state_url": "sqlite:///state/state.db",
    }
    if target == "scim":
        cfg |= {"target": "scim", "scim": {"base_url": "https://scim.example/scim/v2", "token": "file:tok"}}
    else:
        cfg["superoffice"] = {"webapi_url": "https://so/Cust1", "login_url": "https://so/login",
                              "context_identifier": "Cust1", "client_secret": "file:y",
                              "system_user_token": "file:z", "private_key": "file:k"}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scimflow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


#: SCIM ids as servers make them: a UUID, a hex string, one with a dash and dots, one made only of digits.
SCIM_LINKS = [
    {"entra_id": KARI, "associate_id": "2819c223-7f76-453a-919d-413861904646"},
    {"entra_id": OLA, "associate_id": "0123"},
    {"entra_id": PER, "associate_id": "user.per-berg"},
    {"entra_id": "6f1c0005-2b3a-4c5d-9e8f-0a1b2c3d0005", "associate_id": "c8e26fd98e074a63817c6470a71d3045"},
]


@pytest.mark.parametrize(
    ("target", "items"),
    [
        ("scim", SCIM_LINKS),
        ("superoffice", [{"entra_id": KARI, "associate_id": 11}, {"entra_id": OLA, "associate_id": 12}]),
    ],
    ids=["scim", "superoffice"],
)
def test_links_export_import_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, items: list[dict[str, Any]]
) -> None:
    """`links import` then `links export` gives the same links (SCIM ids as strings, digits and leading zero
    kept; AssociateIds as integers), and importing that export into a new store gives it again."""
    from scimflow.commands.links_cmd import export_links, import_links

    first = _links_config(tmp_path / "a", target)
    f = tmp_path / "links.json"
    f.write_text(json.dumps(items))
    assert import_links(first, f) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert export_links(first) == 0
    exported = capsys.readouterr().out
    assert json.loads(exported) == sorted(items, key=lambda i: str(i["entra_id"]))

    second = _links_config(tmp_path / "b", target)
    f.write_text(exported)
    assert import_links(second, f) == 0
    assert f"({len(items)} new or changed)" in capsys.readouterr().out
    assert export_links(second) == 0
    assert capsys.readouterr().out == exported


@pytest.mark.parametrize(
    ("target", "item", "expected"),
    [
        ("scim", {"entra_id": "a", "associate_id": ""}, "item 1: associate_id must be a SCIM id: a non-empty string"),
        ("scim", {"entra_id": "a", "associate_id": "  "}, "item 1: associate_id must be a SCIM id: a non-empty"),
        ("scim", {"entra_id": "a", "associate_id": None}, "item 1: associate_id must be a SCIM id"),
        ("scim", {"entra_id": "a", "associate_id": ["x"]}, "item 1: associate_id must be a SCIM id"),
        ("scim", {"entra_id": "a", "associate_id": "ab\ncd"}, "item 1: associate_id must be a SCIM id without control"),
        ("scim", {"entra_id": "a", "associate_id": "ab\x00"}, "item 1: associate_id must be a SCIM id without control"),
        ("scim", {"entra_id": "a", "associate_id": "x" * 257}, "item 1: associate_id must be a SCIM id of at most 256"),
        ("scim", {"entra_id": "a", "associate_id": True}, "item 1: associate_id must be a SCIM id"),
        ("scim", {"entra_id": "a"}, "item 1: associate_id must be a SCIM id: a non-empty string (got missing)"),
        ("scim", {"entra_id": "b", "associate_id": "id-1"}, "item 1: associate_id id-1 is already linked"),
        ("superoffice", {"entra_id": "a", "associate_id": "abc"}, "item 1: associate_id must be a positive integer"),
        ("superoffice", {"entra_id": "a", "associate_id": "12"}, "item 1: associate_id must be a positive integer"),
    ],
    ids=[
        "empty",
        "blank",
        "null",
        "list",
        "newline",
        "nul",
        "too-long",
        "bool",
        "missing",
        "dup",
        "so-text",
        "so-digits",
    ],
)
def test_links_import_refuses_bad_ids_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, item: dict[str, Any], expected: str
) -> None:
    """A bad partner id refuses the whole file (exit 1), the error names the file and the item, nothing is
    written; a SCIM config takes string ids, a SuperOffice config integers only."""
    from scimflow.commands.links_cmd import export_links, import_links

    cfg = _links_config(tmp_path, target)
    f = tmp_path / "links.json"
    f.write_text(json.dumps([{"entra_id": "z", "associate_id": "id-1" if target == "scim" else 1}, item]))
    assert import_links(cfg, f) == 1
    err = capsys.readouterr().err
    assert str(f) in err and expected in err, err
    assert export_links(cfg) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert max(len(line) for line in err.splitlines()) < 300  # a huge id is cut short in the message


def test_a_scim_store_takes_integer_ids_as_their_digits(tmp_path: Path) -> None:
    """A SCIM store takes positive integers too (as their digits: exports made before ids were written as
    strings), and exports them as strings."""
    from scimflow.state import StateStore

    with StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        assert store.import_links([{"entra_id": "a", "associate_id": 7}], string_ids=True) == 1
        assert store.export_links(string_ids=True) == [{"entra_id": "a", "associate_id": "7"}]
        assert store.export_links() == [{"entra_id": "a", "associate_id": 7}]
