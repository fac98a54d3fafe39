"""The SCIM emulator: a conformant SCIM 2.0 server (scim2-tester), its two policies, its auth and its knobs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_client import RequestNetworkException
from scim2_client.client import BaseSyncSCIMClient
from scim2_server.testing import ScimStorageContract
from scim2_tester import CheckResult, Status, check_server

from scimflow.emulators.pki import TlsFiles
from scimflow.emulators.scim import (
    FastCopyStorage,
    ScimEmulator,
    ScimEmulatorSettings,
    ScimFixtureError,
    scim_provider,
    tree_copy,
)
from scimflow.emulators.scim._server import load_resources
from tests.scim.scimkit import ScimServer, start_scim

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class HttpxSCIMClient(BaseSyncSCIMClient):
    """scim2-client over plain httpx (its own engine is httpx2, not installed here): reference §4's subclass."""

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url = self.client.build_request("GET", endpoint).url
        base = self.client.base_url
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and url.raw_path.startswith(
            base.raw_path
        )

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            raise RequestNetworkException() from exc


def _user(user_name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": user_name, "active": True, **extra}


def _create(c: httpx.Client, kind: str, body: dict[str, Any]) -> str:
    r = c.post(kind, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _patch(c: httpx.Client, path: str, *ops: dict[str, Any]) -> httpx.Response:
    return c.patch(path, json={"schemas": [PATCH], "Operations": list(ops)})


def _not_passed(results: list[CheckResult]) -> list[str]:
    ok = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
    return [f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status not in ok]


@pytest.mark.parametrize("dialect", ["rfc", "entra"])
def test_scim2_tester_check_server_passes(dialect: str, tmp_path: Path, scim_tls: TlsFiles) -> None:
    """scim2-tester's check_server, over a real TLS socket with the bearer token, finds nothing wrong under either policy."""
    server = start_scim(tmp_path, dialect=dialect, tls=scim_tls)
    try:
        with server.client() as http:
            results = check_server(HttpxSCIMClient(http), raise_exceptions=False)
    finally:
        server.stop()
    assert len(results) > 100
    assert _not_passed(results) == []
    # The checker created and deleted real resources through the socket.
    assert server.emulator.stats()["writes"] > 50


def test_bearer_token_required(scim_rfc: ScimServer) -> None:
    """Without the bearer token, or with a wrong one, SCIM requests get a 401 SCIM Error; with it, 200."""
    for token in (None, "wrong-token"):
        with scim_rfc.client(token=token) as c:
            r = c.get("Users")
            assert r.status_code == 401
            assert r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
            assert r.json()["status"] == "401"
            assert c.post("Users", json=_user("x@example.com")).status_code == 401
    with scim_rfc.client() as c:
        assert c.get("Users").status_code == 200
        # RFC 7643 §5: the service provider configuration needs no authentication.
    with scim_rfc.client(token=None) as c:
        assert c.get("ServiceProviderConfig").status_code == 200
    assert scim_rfc.snapshot()["users"] == []
    assert scim_rfc.stats()["unauthorized"] == 4


def test_token_not_in_settings_or_stats(scim_rfc: ScimServer) -> None:
    """The token never appears in /_emulator/settings or /_emulator/stats."""
    with scim_rfc.admin() as c:
        settings = c.get("/_emulator/settings").text
        stats = c.get("/_emulator/stats").text
    assert scim_rfc.token not in settings
    assert scim_rfc.token not in stats


@pytest.mark.parametrize("status", [403, 400])
def test_listing_refused_but_filter_lookup_works(status: int, scim_entra: ScimServer) -> None:
    """With list_users off, GET /Users without a filter is refused; a filter look-up still finds the user."""
    with scim_entra.client() as c:
        uid = _create(c, "Users", _user("Ann.Lee@example.com", externalId="obj-1"))
        scim_entra.settings(list_users=False, list_refused_status=status)
        refused = c.get("Users", params={"startIndex": 1, "count": 100})
        assert refused.status_code == status
        assert "filter" in refused.json()["detail"]
        assert (
            c.post(
                "Users/.search", json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
            ).status_code
            == status
        )
        found = c.get("Users", params={"filter": 'userName eq "ann.lee@example.com"'})
        assert found.status_code == 200
        assert [u["id"] for u in found.json()["Resources"]] == [uid]
        by_external = c.get("Users", params={"filter": 'externalId eq "obj-1"'}).json()
        assert by_external["totalResults"] == 1
        assert c.get(f"Users/{uid}").status_code == 200
        assert c.get("Groups").status_code == 200  # only listing users is refused
        scim_entra.settings(list_users=True)
        assert c.get("Users").status_code == 200
    assert scim_entra.stats()["refused_listings"] == 1


def test_throttle_storm_and_error_burst(scim_rfc: ScimServer) -> None:
    """throttle_next answers 429 with Retry-After, error_next 503, then requests go through; counted in stats."""
    scim_rfc.settings(throttle_next=3, error_next=2, retry_after="7")
    with scim_rfc.client() as c:
        answers = [c.get("Users") for _ in range(6)]
    assert [r.status_code for r in answers] == [429, 429, 429, 503, 503, 200]
    assert all(r.headers["Retry-After"] == "7" for r in answers[:5])
    assert answers[0].json()["status"] == "429"
    stats = scim_rfc.stats()
    assert (stats["throttled"], stats["errors"], stats["requests"]) == (3, 2, 6)


def test_random_throttle_and_error_rates(scim_rfc: ScimServer) -> None:
    """throttle_rate 1 throttles every request and error_rate 1 fails every one; a throttled write changes nothing."""
    scim_rfc.settings(throttle_rate=1.0)
    with scim_rfc.client() as c:
        r = c.post("Users", json=_user("a@example.com"))
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        scim_rfc.settings(throttle_rate=0.0, error_rate=1.0)
        assert c.post("Users", json=_user("a@example.com")).status_code == 503
        scim_rfc.settings(error_rate=0.0)
        assert c.post("Users", json=_user("a@example.com")).status_code == 201
    assert [u["userName"] for u in scim_rfc.snapshot()["users"]] == ["a@example.com"]
    assert scim_rfc.stats()["writes"] == 1


def test_rate_limit_bucket(scim_rfc: ScimServer) -> None:
    """rate_limit_rps lets a burst of about that many requests through, then answers 429 with Retry-After."""
    scim_rfc.settings(rate_limit_rps=2)
    with scim_rfc.client() as c:
        codes = [c.get("Users").status_code for _ in range(8)]
    assert 429 in codes
    assert codes.count(200) <= 4


def test_settings_refuse_unknown_and_fixed(scim_rfc: ScimServer) -> None:
    """POST /_emulator/settings refuses unknown names, the fixed dialect and a bad refusal status."""
    with scim_rfc.admin() as c:
        assert c.post("/_emulator/settings", json={"nope": 1}).status_code == 400
        assert c.post("/_emulator/settings", json={"dialect": "entra"}).status_code == 400
        assert c.post("/_emulator/settings", json={"list_refused_status": 500}).status_code == 400
        assert c.get("/_emulator/settings").json()["list_refused_status"] == 403


def test_snapshot_shape_and_reset_counters(scim_rfc: ScimServer) -> None:
    """The snapshot holds SCIM Users and Groups with members; reset-counters zeroes the stats."""
    with scim_rfc.client() as c:
        uid = _create(
            c,
            "Users",
            _user(
                "b@example.com",
                externalId="obj-b",
                name={"givenName": "Bo", "familyName": "Berg", "formatted": "Bo Berg"},
                emails=[{"type": "work", "primary": True, "value": "b@example.com"}],
            ),
        )
        gid = _create(
            c, "Groups", {"schemas": [GROUP], "displayName": "scimflow:role:Sales", "externalId": "scimflow:role:Sales"}
        )
        assert _patch(c, f"Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": uid}]}).status_code in (
            200,
            204,
        )
    snap = scim_rfc.snapshot()
    assert set(snap) == {"users", "groups"}
    (user,) = snap["users"]
    assert user["schemas"] == [USER]
    assert (user["id"], user["userName"], user["externalId"], user["active"]) == (uid, "b@example.com", "obj-b", True)
    assert user["name"]["formatted"] == "Bo Berg"
    assert user["meta"]["resourceType"] == "User"
    (group,) = snap["groups"]
    assert (group["id"], group["displayName"], group["externalId"]) == (
        gid,
        "scimflow:role:Sales",
        "scimflow:role:Sales",
    )
    assert [m["value"] for m in group["members"]] == [uid]
    stats = scim_rfc.stats()
    assert stats["writes"] == 3
    assert stats["endpoints"]["PATCH /Groups/{id}"] == 1
    with scim_rfc.admin() as c:
        assert c.post("/_emulator/reset-counters").json()["requests"] == 0
    assert scim_rfc.stats()["writes"] == 0


def test_fixture_loads_and_snapshot_round_trips(tmp_path: Path, scim_tls: TlsFiles) -> None:
    """A fixture in the snapshot format starts the server with those ids; its snapshot loads back equal."""
    data = {
        "users": [{"schemas": [USER], "id": "u1", "userName": "c@example.com", "active": False, "externalId": "obj-c"}],
        "groups": [
            {"schemas": [GROUP], "id": "g1", "displayName": "scimflow:role:Support", "members": [{"value": "u1"}]}
        ],
    }
    server = start_scim(tmp_path, data, dialect="entra", tls=scim_tls)
    try:
        with server.client() as c:
            assert c.get("Users/u1").json()["active"] is False
            assert c.get("Users", params={"filter": 'userName eq "c@example.com"'}).json()["totalResults"] == 1
            # Unique userName holds for loaded users too.
            assert c.post("Users", json=_user("C@example.com")).status_code == 409
            assert [m["value"] for m in c.get("Groups/g1").json()["members"]] == ["u1"]
        snap = server.snapshot()
    finally:
        server.stop()
    again = ScimEmulator(snap, ScimEmulatorSettings(dialect="entra"))
    assert again.snapshot() == snap


def test_bad_fixture_names_the_record() -> None:
    """A fixture record that is not a valid SCIM resource is refused with a message naming list and index."""
    with pytest.raises(ScimFixtureError, match=r"users\[1\]"):
        ScimEmulator({"users": [_user("ok@example.com"), {"schemas": [USER], "userName": 5, "active": "maybe"}]})
    with pytest.raises(ScimFixtureError, match=r"groups\[0\] must be an object"):
        ScimEmulator({"groups": ["nope"]})


def _entra_member_removal(server: ScimServer) -> tuple[httpx.Response, list[str]]:
    with server.client() as c:
        a = _create(c, "Users", _user("a@example.com"))
        b = _create(c, "Users", _user("b@example.com"))
        gid = _create(c, "Groups", {"schemas": [GROUP], "displayName": "g", "externalId": "g"})
        added = _patch(
            c,
            f"Groups/{gid}",
            {"op": "Add", "path": "members", "value": [{"$ref": None, "value": a}, {"$ref": None, "value": b}]},
        )
        assert added.status_code == 204, added.text
        removed = _patch(c, f"Groups/{gid}", {"op": "Remove", "path": "members", "value": [{"value": a}]})
        members = [m["value"] for m in c.get(f"Groups/{gid}").json().get("members", [])]
    return removed, sorted(members)


def test_entra_member_removal_accepted_under_entra_policy(scim_entra: ScimServer) -> None:
    """Entra's non-RFC member removal (Remove + value array) removes exactly the named member under the entra policy."""
    removed, members = _entra_member_removal(scim_entra)
    assert removed.status_code == 204, removed.text
    snap = scim_entra.snapshot()
    b = next(u["id"] for u in snap["users"] if u["userName"] == "b@example.com")
    assert members == [b]


def test_entra_member_removal_refused_under_strict_policy(scim_rfc: ScimServer) -> None:
    """The same removal is a 400 invalidValue under the strict policy, and the members stay."""
    removed, members = _entra_member_removal(scim_rfc)
    assert removed.status_code == 400
    assert removed.json()["scimType"] == "invalidValue"
    assert len(members) == 2


def test_entra_requests_accepted_under_entra_policy(scim_entra: ScimServer) -> None:
    """Entra's string active, capitalised ops and a replace on a missing work e-mail entry all apply under entra."""
    with scim_entra.client() as c:
        uid = _create(c, "Users", _user("d@example.com"))
        r = _patch(
            c,
            f"Users/{uid}",
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "d@example.com"},
            {"op": "Replace", "path": "name.familyName", "value": "Dahl"},
        )
        assert r.status_code == 204, r.text
        user = c.get(f"Users/{uid}").json()
    assert user["active"] is False
    assert user["emails"] == [{"type": "work", "value": "d@example.com"}]
    assert user["name"]["familyName"] == "Dahl"


def test_missing_entry_refused_under_strict_policy(scim_rfc: ScimServer) -> None:
    """Under the strict policy a replace on a filtered path matching no entry is a 400 and changes nothing."""
    with scim_rfc.client() as c:
        uid = _create(c, "Users", _user("e@example.com"))
        r = _patch(
            c, f"Users/{uid}", {"op": "replace", "path": 'emails[type eq "work"].value', "value": "e@example.com"}
        )
        assert r.status_code == 400
        assert "emails" not in c.get(f"Users/{uid}").json()


def test_latency_applies_to_scim_requests(scim_rfc: ScimServer) -> None:
    """With latency set, a SCIM answer takes at least that long; /_emulator answers do not wait."""
    import time

    scim_rfc.settings(latency=0.2)
    with scim_rfc.client() as c:
        c.get("ServiceProviderConfig")
        t0 = time.monotonic()
        assert c.get("Users").status_code == 200
        assert time.monotonic() - t0 >= 0.19
    t0 = time.monotonic()
    scim_rfc.stats()
    assert time.monotonic() - t0 < 0.19


def test_snapshot_is_json_serialisable(scim_entra: ScimServer) -> None:
    """The in-process snapshot equals what GET /_emulator/snapshot answers over the socket."""
    with scim_entra.client() as c:
        _create(c, "Users", _user("f@example.com"))
    assert json.loads(json.dumps(scim_entra.emulator.snapshot())) == scim_entra.snapshot()


# -- scimflow emulate --target scim ------------------------------------------------------------------------


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written within {timeout} s"
        time.sleep(0.05)


def _run_emulate(cfg_path: Path, **kwargs: Any) -> tuple[Any, Any, dict[str, int]]:
    import threading

    from scimflow.commands.emulate_cmd import run_emulate

    stop = threading.Event()
    result: dict[str, int] = {}

    def run() -> None:
        result["rc"] = run_emulate(None, None, cfg_path, 12, 5, None, None, None, target="scim", stop=stop, **kwargs)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return stop, th, result


@pytest.mark.parametrize("dialect", ["entra", "rfc"])
def test_emulate_target_scim_writes_config_and_token(dialect: str, tmp_path: Path) -> None:
    """`emulate --target scim` writes a target: scim config with a 0600 token file and serves Graph and SCIM."""
    import ssl

    import yaml

    cfg_path = tmp_path / "emu" / "scimflow.yaml"
    stop, th, result = _run_emulate(cfg_path, scim_dialect=dialect)
    try:
        _wait_for(cfg_path)
        cfg = yaml.safe_load(cfg_path.read_text())
        assert cfg["target"] == "scim"
        assert "superoffice" not in cfg
        scim = cfg["scim"]
        assert scim["token"] == "file:scim-token"
        assert (scim["dialect"], scim["group_prefix"], scim["write_concurrency"]) == (dialect, "scimflow", 4)
        assert scim["base_url"].startswith("https://127.0.0.1:") and scim["base_url"].endswith("/scim/v2")
        token_file = cfg_path.parent / "scim-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token and token not in cfg_path.read_text()
        assert not (cfg_path.parent / "superoffice-client-secret").exists()
        ctx = ssl.create_default_context(cafile=str(cfg_path.parent / cfg["ca_bundle"]))
        with httpx.Client(verify=ctx, timeout=30) as c:
            graph = c.get(f"{cfg['entra']['graph_url']}/_emulator/snapshot").json()
            assert len(graph["users"]) == 12
            assert c.get(f"{scim['base_url']}/Users").status_code == 401
            listed = c.get(f"{scim['base_url']}/Users", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200
            assert listed.json()["totalResults"] == 0  # --users N: the SCIM side starts empty
            origin = scim["base_url"].removesuffix("/scim/v2")
            assert c.get(f"{origin}/_emulator/snapshot").json() == {"users": [], "groups": []}
            assert c.get(f"{origin}/_emulator/settings").json()["dialect"] == dialect
    finally:
        stop.set()
        th.join(20)
    assert result.get("rc") == 0


def test_emulate_target_scim_from_scim_data(tmp_path: Path) -> None:
    """`--scim-data F.json` starts the SCIM emulator with that file's users and groups."""
    import ssl

    import yaml

    data = {
        "users": [_user("g@example.com", id="u-g")],
        "groups": [{"schemas": [GROUP], "id": "g-1", "displayName": "x"}],
    }
    fixture = tmp_path / "scim.json"
    fixture.write_text(json.dumps(data))
    cfg_path = tmp_path / "emu" / "scimflow.yaml"
    stop, th, result = _run_emulate(cfg_path, scim_data=fixture)
    try:
        _wait_for(cfg_path)
        cfg = yaml.safe_load(cfg_path.read_text())
        ctx = ssl.create_default_context(cafile=str(cfg_path.parent / cfg["ca_bundle"]))
        origin = cfg["scim"]["base_url"].removesuffix("/scim/v2")
        with httpx.Client(verify=ctx, timeout=30) as c:
            snap = c.get(f"{origin}/_emulator/snapshot").json()
        assert [u["id"] for u in snap["users"]] == ["u-g"]
        assert [g["displayName"] for g in snap["groups"]] == ["x"]
    finally:
        stop.set()
        th.join(20)
    assert result.get("rc") == 0


def test_emulate_target_scim_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad --target/--scim-dialect values, a bad --scim-data file and misplaced fixtures exit 1 with a clear message."""
    import threading

    from scimflow.commands.emulate_cmd import run_emulate

    cfg = tmp_path / "scimflow.yaml"
    stop = threading.Event()
    bad = tmp_path / "bad.json"
    bad.write_text('{"users": [1]}')
    cases: list[tuple[dict[str, Any], str]] = [
        ({"target": "ldap"}, "--target must be superoffice or scim"),
        ({"target": "scim", "scim_dialect": "azure"}, "--scim-dialect must be entra or rfc"),
        ({"target": "scim", "scim_data": bad}, "users[0] must be an object"),
        ({"scim_data": bad}, "--scim-data needs --target scim"),
    ]
    for kwargs, message in cases:
        assert run_emulate(None, None, cfg, 3, 0, None, None, None, stop=stop, **kwargs) == 1
        assert message in capsys.readouterr().err
    assert not cfg.exists()


def test_emulate_target_scim_config_loads(tmp_path: Path) -> None:
    """The config `emulate --target scim` writes passes the config model, and its token reference resolves."""
    from scimflow.config import load_config

    cfg_path = tmp_path / "emu" / "scimflow.yaml"
    stop, th, result = _run_emulate(cfg_path, scim_dialect="rfc")
    try:
        _wait_for(cfg_path)
        cfg = load_config(cfg_path)
        assert cfg.target == "scim"
        assert cfg.superoffice is None
        assert cfg.scim is not None
        assert cfg.scim.dialect == "rfc"
        assert cfg.scim.token.reveal() == (cfg_path.parent / "scim-token").read_text().strip()
    finally:
        stop.set()
        th.join(20)
    assert result.get("rc") == 0


# -- the emulator's storage: scim2-server's, with cheaper copies --------------------------------------------


class TestFastCopyStorage(ScimStorageContract):
    """scim2-server's own storage contract (44 rules) holds for the emulator's FastCopyStorage."""

    @pytest.fixture
    def storage(self) -> FastCopyStorage:
        """A new, empty FastCopyStorage."""
        return FastCopyStorage()


def test_tree_copy_is_a_deep_copy() -> None:
    """tree_copy gives a resource equal to deepcopy's, sharing no model, list or dict with the original."""
    provider = scim_provider("rfc")
    group: Any
    [group] = load_resources(
        provider,
        {"groups": [{"displayName": "g", "externalId": "x", "members": [{"value": str(i)} for i in range(3)]}]},
        "test",
    )
    copied = tree_copy(group)
    assert copied == copy.deepcopy(group)
    assert copied is not group and copied.meta is not group.meta
    assert copied.members is not group.members
    assert all(a is not b for a, b in zip(copied.members, group.members, strict=True))
    copied.members[0].value = "changed"
    copied.members.append(copied.members[1])
    assert [m.value for m in group.members] == ["0", "1", "2"]


def _member_script(c: httpx.Client, gid: str, ids: list[str], dialect: str) -> list[tuple[int, Any]]:
    """A run of member PATCHes (and one that is not member-only) on group ``gid``: each answer's status and body."""

    def patch(ops: list[dict[str, Any]], **headers: str) -> tuple[int, Any]:
        r = c.patch(f"Groups/{gid}", json={"schemas": [PATCH], "Operations": ops}, headers=headers)
        return r.status_code, (r.json() if r.content else None)

    def add(*users: str, op: str = "add") -> dict[str, Any]:
        return {"op": op, "path": "members", "value": [{"value": u} for u in users]}

    out = [
        patch([add(ids[1], ids[2])]),
        patch([add(ids[1], ids[3], op="Add")]),  # ids[1] again
        patch([{"op": "remove", "path": f'members[value eq "{ids[2]}"]'}]),
        patch([{"op": "remove", "path": 'members[value eq "nobody"]'}]),
        patch([{"op": "Remove", "path": "members", "value": [{"value": ids[0]}]}]),  # Entra's: 400 under rfc
        patch([add(ids[4])], **{"If-Match": 'W/"999"'}),  # stale: 412
        patch([add(ids[4]), {"op": "replace", "path": "displayName", "value": f"g-{dialect}"}]),  # not member-only
        patch([add(ids[0], ids[4]), {"op": "remove", "path": f'members[value eq "{ids[3]}"]'}]),
        patch([add("not-a-user-id")]),
    ]
    group = c.get(f"Groups/{gid}").json()
    out.append((200, {k: group[k] for k in ("displayName", "members")}))
    out.append((200, c.get(f"Groups/{gid}").headers.get("ETag")))
    return out


@pytest.mark.parametrize("dialect", ["rfc", "entra"])
def test_member_patches_answer_as_scim2_server_does(dialect: str, tmp_path: Path, scim_tls: TlsFiles) -> None:
    """Member PATCHes served on a window of the group give the answers, members and versions scim2-server gives."""
    runs, windowed = [], []
    for fast in (True, False):
        server = start_scim(tmp_path / str(fast), dialect=dialect, tls=scim_tls, fast_member_patches=fast)
        try:
            with server.client() as c:
                ids = [c.post("Users", json={"schemas": [USER], "userName": f"u{i}@x"}).json()["id"] for i in range(5)]
                made = c.post(
                    "Groups", json={"schemas": [GROUP], "displayName": "g", "members": [{"value": ids[0]}]}
                ).json()
                script = _member_script(c, made["id"], ids, dialect)
                windowed.append(server.stats()["windowed_member_patches"])
                names = {made["id"]: "GID", **{uid: f"U{i}" for i, uid in enumerate(ids)}}
                texts = [json.dumps(b, sort_keys=True) for _, b in script]
                for uid, name in names.items():
                    texts = [t.replace(uid, name) for t in texts]
                runs.append(list(zip([s for s, _ in script], texts, strict=True)))
        finally:
            server.stop()
    fast_run, library_run = runs
    assert fast_run == library_run
    assert windowed[1] == 0 and windowed[0] >= 5  # the member-only PATCHes (not the mixed one) took the window
    assert [s for s, _ in fast_run][:6] == [204, 204, 204, 204, 204 if dialect == "entra" else 400, 412]


def _script_answers(app: Any, base: str, headers: dict[str, str]) -> list[tuple[int, Any]]:
    """POST two users and a group, PATCH a member in, then GET, filter and list: each status and JSON body."""

    async def run() -> list[tuple[int, Any]]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
            out: list[httpx.Response] = []
            for name in ("a@x", "b@x"):
                body = {"schemas": [USER], "userName": name, "emails": [{"value": name, "type": "work"}]}
                out.append(await c.post(f"{base}/Users", json=body))
            a, b = (r.json()["id"] for r in out)
            out.append(
                await c.post(f"{base}/Groups", json={"schemas": [GROUP], "displayName": "g", "members": [{"value": a}]})
            )
            gid = out[-1].json()["id"]
            add = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": b}]}]}
            out.append(await c.patch(f"{base}/Groups/{gid}", json=add))
            out.append(await c.get(f"{base}/Groups/{gid}"))
            out.append(await c.get(f"{base}/Users/{a}"))
            out.append(await c.get(f"{base}/Users", params={"filter": 'userName eq "B@X"'}))
            out.append(await c.get(f"{base}/Groups"))
            names = {a: "A", b: "B", gid: "G"}
            answers = []
            for r in out:
                text = r.text.replace("/scim/v2", "/v2")
                for uid, name in names.items():
                    text = text.replace(uid, name)
                answer: Any = json.loads(text) if text else None
                for resource in [answer, *(answer.get("Resources") or [])] if isinstance(answer, dict) else []:
                    for key in ("created", "lastModified"):
                        (resource.get("meta") or {}).pop(key, None)
                answers.append((r.status_code, answer))
            return answers

    import asyncio

    return asyncio.run(run())


def test_answers_equal_plain_scim2_server() -> None:
    """The emulator (cheaper copies, windowed member PATCHes, cached reference paths) answers a create, member PATCH,
    read, filter and list script exactly as scim2-server's own application with its own storage and service."""
    from scim2_server.applications.asgi import ASGIApplication
    from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage
    from scim2_server.service import ScimService

    provider = scim_provider("rfc")
    library = ASGIApplication(AsyncInMemoryStorage(InMemoryStorage()), provider, ScimService(provider))
    emulator = ScimEmulator({}, ScimEmulatorSettings(dialect="rfc", token="t"))
    ours = _script_answers(emulator.app, "/scim/v2", {"Authorization": "Bearer t"})
    theirs = _script_answers(library, "/v2", {})
    assert [s for s, _ in ours] == [201, 201, 201, 204, 200, 200, 200, 200]
    assert ours == theirs
    assert emulator.stats()["windowed_member_patches"] == 1
    group = ours[4][1]
    assert group["members"] == [{"value": "A"}, {"value": "B"}]
    assert group["meta"]["location"] == "http://t/v2/Groups/G"
