"""The SCIM client: the config block, the exact Entra request shapes, both dialects against scim2-server, faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from scim2_models import ScimPolicy, ScimProvider
from scim2_server.applications.wsgi import WSGIApplication
from scim2_server.memory import InMemoryStorage
from scim2_server.utils import load_default_provider

from scimflow.config import ConfigError, ScimConfig, parse_config
from scimflow.connectors.errors import AuthError, ThrottledError
from scimflow.connectors.http import RetryPolicy
from scimflow.connectors.scim import ScimClient, read_scim_state

TOKEN = "t0ken-never-logged"
APP_URL = "http://127.0.0.1/v2"  # scim2-server in process
FAST = RetryPolicy(attempts=8, timeout=30, wait_initial=0.0, wait_max=0.0)
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim_config(dialect: str = "entra", base_url: str = "http://127.0.0.1/scim/v2", **extra: Any) -> ScimConfig:
    """A ScimConfig whose token comes from the environment variable set by the ``token_env`` fixture."""
    return ScimConfig.model_validate({"base_url": base_url, "token": "env:H6_SCIM_TOKEN", "dialect": dialect, **extra})


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bearer token every test's config refers to."""
    monkeypatch.setenv("H6_SCIM_TOKEN", TOKEN)


def scim_app(policy: ScimPolicy | None = None) -> WSGIApplication:
    """scim2-server in process: the strict default provider, or one under ``policy``."""
    p = load_default_provider()
    if policy is not None:
        p = ScimProvider(p.models, p.resource_types, p.config, policy)
    return WSGIApplication(InMemoryStorage(), p)


#: The Entra-tolerant policy of reference §4, plus unknown schema URNs ignored (Entra's ADSCIM group URN).
ENTRA_POLICY = ScimPolicy(
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    unknown=ScimPolicy.Unknown.ignore,
)


def client_for(app: WSGIApplication, dialect: str) -> ScimClient:
    """A ScimClient on scim2-server in process (no socket)."""
    return ScimClient(scim_config(dialect, APP_URL), transport=httpx.WSGITransport(app=app), policy=FAST)


# ---------------------------------------------------------------------------------------------- config


def _cfg(data: dict[str, Any], tmp_path: Path) -> Any:
    entra = {"tenant_id": "t", "client_id": "c", "client_secret": "env:X"}
    return parse_config({"entra": entra, **data}, base=tmp_path, source="scimflow.yaml")


def test_config_scim_target_needs_no_superoffice_block(tmp_path: Path) -> None:
    """A target: scim config validates without superoffice:, resolves a file: token beside it, and names a missing block."""
    cfg = _cfg({"target": "scim", "scim": {"base_url": "https://img.example/scim/v2/", "token": "file:tok"}}, tmp_path)
    assert cfg.scim is not None and cfg.superoffice is None
    assert cfg.scim.base_url == "https://img.example/scim/v2" and cfg.scim.dialect == "entra"
    assert cfg.scim.token.path == tmp_path / "tok"
    assert cfg.tenant_key == "img-example"
    with pytest.raises(ConfigError, match="superoffice"):
        cfg.require_superoffice()
    with pytest.raises(ConfigError, match=r"scim: the block is required"):
        _cfg({"target": "scim"}, tmp_path)
    with pytest.raises(ConfigError, match=r"superoffice: the block is required"):
        _cfg({}, tmp_path)


@pytest.mark.parametrize(
    ("scim", "key"),
    [
        ({"base_url": "http://img.example/scim", "token": "env:T"}, "scim.base_url"),
        ({"base_url": "https://img.example/scim", "token": "literal-token"}, "scim.token"),
        ({"base_url": "https://img.example/scim", "token": "env:T", "dialect": "azure"}, "scim.dialect"),
        ({"base_url": "https://img.example/scim", "token": "env:T", "group_prefix": "a:b"}, "scim.group_prefix"),
    ],
)
def test_config_scim_errors_name_the_key(tmp_path: Path, scim: dict[str, Any], key: str) -> None:
    """A bad scim: value is refused with an error naming its key (http only on loopback, secrets by reference)."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _cfg({"target": "scim", "scim": scim}, tmp_path)


def test_config_http_allowed_for_loopback(tmp_path: Path) -> None:
    """http:// is accepted for a loopback host only."""
    cfg = _cfg({"target": "scim", "scim": {"base_url": "http://[::1]:8080/v2", "token": "env:T"}}, tmp_path)
    assert cfg.scim is not None and cfg.scim.base_url == "http://[::1]:8080/v2"


# ---------------------------------------------------------------------------------------------- entra shapes


class Recorder:
    """An httpx MockTransport that records each request and answers like an empty, accepting SCIM server."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/scim/v2/")
        headers = {"Content-Type": "application/scim+json"}
        if request.method == "GET":
            empty = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0,
                     "startIndex": 1, "itemsPerPage": 0, "Resources": []}  # fmt: skip
            return httpx.Response(200, json=empty, headers=headers)
        if request.method == "POST":
            body = json.loads(request.content)
            rid = "u-1" if path == "Users" else "g-1"
            return httpx.Response(201, json={**body, "id": rid}, headers=headers)
        return httpx.Response(204)

    def shapes(self) -> list[tuple[str, str, list[tuple[str, str]], Any]]:
        """(method, path, query pairs, JSON body) of every request."""
        return [
            (
                r.method,
                r.url.path,
                parse_qsl(r.url.query.decode(), keep_blank_values=True),
                json.loads(r.content) if r.content else None,
            )
            for r in self.requests
        ]


def test_entra_dialect_sends_exactly_the_requests_of_reference_section_2() -> None:
    """Create (with its filter GETs), update, rename, disable/enable, group create (with its filter GET), add and
    remove members: method, path, query and body exactly as Entra's provisioning service sends them."""
    rec = Recorder()
    client = ScimClient(scim_config("entra"), transport=rec.transport, policy=FAST)
    values = {"user_name": "ada@contoso.com", "entra_id": "oid-1", "first_name": "Ada", "last_name": "Lovelace",
              "display_name": "Ada Lovelace", "email": "ada@contoso.com", "title": "Engineer",
              "mobile_phone": "+47 1"}  # fmt: skip
    made = client.create_user(values)
    assert made.created and made.id == "u-1"
    current = {**values, "id": "u-1"}
    client.patch_user("u-1", {"last_name": "Byron", "email": "ada@b.com"}, current)
    client.patch_user("u-1", {"user_name": "ada.byron@contoso.com"}, current)
    client.set_active("u-1", False)
    client.set_active("u-1", True)
    group, created = client.create_group("scimflow:role:Sales")
    assert created and group["id"] == "g-1"
    client.change_members("g-1", add=["u-1", "u-2"])
    client.change_members("g-1", remove=["u-1", "u-2"])

    base = "/scim/v2"
    user_schemas = ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]  # fmt: skip
    expected = [
        ("GET", f"{base}/Users", [("filter", 'userName eq "ada@contoso.com"')], None),
        ("GET", f"{base}/Users", [("filter", 'externalId eq "oid-1"')], None),
        ("POST", f"{base}/Users", [], {
            "schemas": user_schemas, "externalId": "oid-1", "userName": "ada@contoso.com", "active": True,
            "displayName": "Ada Lovelace", "emails": [{"primary": True, "type": "work", "value": "ada@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Ada Lovelace", "familyName": "Lovelace", "givenName": "Ada"},
            "roles": [], "title": "Engineer", "phoneNumbers": [{"type": "mobile", "value": "+47 1"}],
        }),
        ("PATCH", f"{base}/Users/u-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "name.familyName", "value": "Byron"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ada@b.com"},
            {"op": "Replace", "path": "name.formatted", "value": "Ada Byron"},
        ]}),
        ("PATCH", f"{base}/Users/u-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "userName", "value": "ada.byron@contoso.com"}]}),
        ("PATCH", f"{base}/Users/u-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}]}),
        ("PATCH", f"{base}/Users/u-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "True"}]}),
        ("GET", f"{base}/Groups", [("excludedAttributes", "members"),
                                   ("filter", 'displayName eq "scimflow:role:Sales"')], None),
        ("POST", f"{base}/Groups", [], {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "scimflow:role:Sales", "displayName": "scimflow:role:Sales",
            "meta": {"resourceType": "Group"},
        }),
        ("PATCH", f"{base}/Groups/g-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "members", "value": [{"$ref": None, "value": "u-1"}, {"$ref": None, "value": "u-2"}]}]}),
        ("PATCH", f"{base}/Groups/g-1", [], {"schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]}]}),
    ]  # fmt: skip
    assert rec.shapes() == expected
    for r in rec.requests:
        assert r.headers["Authorization"] == f"Bearer {TOKEN}"
        if r.content:
            assert r.headers["Content-Type"] == "application/scim+json"


def test_entra_dialect_removes_an_emptied_value_and_never_sends_null() -> None:
    """A value that becomes empty is a Remove of its path; nothing null is ever sent (no ServiceProviderConfig read)."""
    rec = Recorder()
    client = ScimClient(scim_config("entra"), transport=rec.transport, policy=FAST)
    client.patch_user("u-1", {"title": "", "mobile_phone": None, "first_name": None}, {"last_name": "L"})
    (method, path, query, body) = rec.shapes()[0]
    assert (method, path, query) == ("PATCH", "/scim/v2/Users/u-1", [])
    assert body["Operations"] == [
        {"op": "Remove", "path": "title"},
        {"op": "Remove", "path": 'phoneNumbers[type eq "mobile"]'},
        {"op": "Remove", "path": "name.givenName"},
        {"op": "Replace", "path": "name.formatted", "value": "L"},
    ]
    client.create_user({"user_name": "x@y", "first_name": None, "title": ""})
    post = rec.shapes()[-1][3]
    assert "null" not in json.dumps(post) and "title" not in post and "name" not in post


# ---------------------------------------------------------------------------------------------- scim2-server


@pytest.mark.parametrize(("dialect", "policy"), [("rfc", None), ("entra", ENTRA_POLICY)])
def test_both_dialects_against_scim2_server(dialect: str, policy: ScimPolicy | None) -> None:
    """rfc against the strict server and entra against the Entra-tolerant one: create, update, rename, disable,
    enable, group create, member add and remove all land as intended."""
    app = scim_app(policy)
    client = client_for(app, dialect)
    raw = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP_URL + "/")
    values = {"user_name": "ada@contoso.com", "entra_id": "oid-1", "first_name": "Ada", "last_name": "Lovelace",
              "display_name": "Ada Lovelace", "email": "ada@contoso.com", "title": "Engineer"}  # fmt: skip
    made = client.create_user(values)
    other = client.create_user({"user_name": "bob@contoso.com", "entra_id": "oid-2"})
    assert made.created and other.created
    uid = made.id
    client.patch_user(uid, {"last_name": "Byron", "email": "ada@b.com", "mobile_phone": "+47 2", "title": None},
                      made.values)  # fmt: skip
    client.patch_user(uid, {"user_name": "ada.byron@contoso.com"}, made.values)
    client.set_active(uid, False)
    user = raw.get(f"Users/{uid}").json()
    assert user["active"] is False and user["userName"] == "ada.byron@contoso.com"
    assert user["name"] == {"formatted": "Ada Byron", "familyName": "Byron", "givenName": "Ada"}
    assert [e["value"] for e in user["emails"]] == ["ada@b.com"]
    assert [p["value"] for p in user["phoneNumbers"]] == ["+47 2"] and "title" not in user
    client.set_active(uid, True)
    assert raw.get(f"Users/{uid}").json()["active"] is True

    group, created = client.create_group("scimflow:role:Sales")
    again, created_again = client.create_group("scimflow:role:Sales", look_first=True)
    assert created and again["id"] == group["id"] and not created_again
    client.change_members(group["id"], add=[uid, other.id])
    members = {m["value"] for m in raw.get(f"Groups/{group['id']}").json()["members"]}
    assert members == {uid, other.id}
    client.change_members(group["id"], remove=[uid])
    members = {m["value"] for m in raw.get(f"Groups/{group['id']}").json().get("members", [])}
    assert members == {other.id}

    users, groups = read_scim_state(client)
    row = users.filter(users["partner_id"] == other.id).to_dicts()[0]
    assert row["role"] == "Sales" and row["groups"] == ["scimflow:role:Sales"] and row["active"] is True
    assert groups.select("display_name", "element", "value").to_dicts() == [
        {"display_name": "scimflow:role:Sales", "element": "role", "value": "Sales"}
    ]


def test_rfc_dialect_sends_if_match_when_the_server_has_etags() -> None:
    """rfc reads ServiceProviderConfig once and sends If-Match; a stale version is a ConflictError (412)."""
    from scimflow.connectors.errors import ConflictError

    app = scim_app()
    client = client_for(app, "rfc")
    made = client.create_user({"user_name": "ada@contoso.com"})
    version = made.values["version"]
    assert version
    client.patch_user(made.id, {"title": "One"}, made.values, version=version)
    with pytest.raises(ConflictError, match="If-Match"):
        client.patch_user(made.id, {"title": "Two"}, made.values, version=version)


def test_rfc_create_409_rematches_and_updates() -> None:
    """A 409 on create is "already there": the user is found by filter and brought up to date, not duplicated."""
    app = scim_app()
    client = client_for(app, "rfc")
    first = client.create_user({"user_name": "Ada@Contoso.com", "title": "Old"})
    again = client.create_user({"user_name": "ada@contoso.com", "title": "New", "entra_id": "oid-1"})
    assert not again.created and again.id == first.id
    users, _ = read_scim_state(client)
    assert users.height == 1
    assert users.row(0, named=True)["title"] == "New" and users.row(0, named=True)["entra_id"] == "oid-1"


# ---------------------------------------------------------------------------------------------- faults


class Faulty:
    """A transport in front of scim2-server that answers some requests with a fault first."""

    def __init__(self, app: WSGIApplication, fault: Callable[[httpx.Request, int], httpx.Response | None]) -> None:
        self.inner = httpx.WSGITransport(app=app)
        self.fault = fault
        self.count = 0
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        self.seen.append((request.method, request.url.path))
        answer = self.fault(request, self.count)
        return answer if answer is not None else self.inner.handle_request(request)


def faulty_client(app: WSGIApplication, fault: Any, dialect: str = "rfc") -> tuple[ScimClient, Faulty]:
    """A client whose requests pass through a :class:`Faulty` transport."""
    t = Faulty(app, fault)
    transport = httpx.MockTransport(t.handle_request)
    return ScimClient(scim_config(dialect, APP_URL), transport=transport, policy=FAST), t


def test_429_storm_with_retry_after_is_ridden_out() -> None:
    """Five 429s with Retry-After before each write succeed on retry; the user exists once."""
    storm = {"left": 5}

    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "POST" and storm["left"] > 0:
            storm["left"] -= 1
            return httpx.Response(429, headers={"Retry-After": "0.01"})
        return None

    app = scim_app()
    client, t = faulty_client(app, fault)
    made = client.create_user({"user_name": "a@b.c"})
    assert made.created and t.seen.count(("POST", "/v2/Users")) == 6
    users, _ = read_scim_state(client)
    assert users.height == 1


def test_429_beyond_the_budget_is_a_throttled_error() -> None:
    """A 429 that never ends raises ThrottledError after the retry budget."""
    app = scim_app()
    client, t = faulty_client(app, lambda r, n: httpx.Response(429, headers={"Retry-After": "0"}))
    with pytest.raises(ThrottledError):
        client.get_user("x")
    assert t.count == FAST.attempts


def test_503_burst_is_retried() -> None:
    """Three 503s (Retry-After) on a group PATCH, then success: the members are added once."""
    burst = {"left": 3}

    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "PATCH" and burst["left"] > 0:
            burst["left"] -= 1
            return httpx.Response(503, headers={"Retry-After": "0"})
        return None

    app = scim_app()
    client, _ = faulty_client(app, fault)
    u = client.create_user({"user_name": "a@b.c"})
    g, _ = client.create_group("scimflow:role:X")
    assert client.change_members(g["id"], add=[u.id]) == 1
    assert [m["value"] for m in client.get_group(g["id"])["members"]] == [u.id]


def test_token_refused_is_a_clear_auth_error_without_the_token() -> None:
    """A 401 is an AuthError that says the token was refused and never contains it; nothing is written."""

    def fault(request: httpx.Request, n: int) -> httpx.Response:
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "401", "detail": "bad token"}
        return httpx.Response(401, json=body)

    app = scim_app()
    client, t = faulty_client(app, fault, dialect="entra")
    with pytest.raises(AuthError, match=r"SCIM token refused \(check scim.token\)") as info:
        client.create_user({"user_name": "a@b.c"})
    assert TOKEN not in str(info.value)
    assert [m for m, _ in t.seen] == ["GET"]  # stopped at the first filter GET: no POST


def test_listing_refused_falls_back_to_filter_lookups() -> None:
    """A server answering 403 to unfiltered lists is read by userName/externalId filters and group displayName."""

    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "GET" and "startIndex" in request.url.params and "filter" not in request.url.params:
            return httpx.Response(403, json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                             "status": "403", "detail": "listing not allowed"})  # fmt: skip
        return None

    app = scim_app()
    client, _ = faulty_client(app, fault)
    a = client.create_user({"user_name": "a@b.c", "entra_id": "oid-a"})
    b = client.create_user({"user_name": "b@b.c", "entra_id": "oid-b"})
    client.create_user({"user_name": "unmanaged@b.c"})
    g, _ = client.create_group("scimflow:user_plan:Sales Premium")
    client.change_members(g["id"], add=[a.id, b.id])
    users, groups = read_scim_state(
        client,
        users=[("A@b.c", "oid-a"), ("nobody@b.c", "oid-b"), ("ghost@b.c", None)],
        group_names=["scimflow:user_plan:Sales Premium", "scimflow:role:Missing"],
    )
    assert sorted(users["user_name"].to_list()) == ["a@b.c", "b@b.c"]
    assert set(users["user_plan"].to_list()) == {"Sales Premium"}
    assert groups["display_name"].to_list() == ["scimflow:user_plan:Sales Premium"]


def test_probe_reports_token_listing_and_etags() -> None:
    """probe: a strict scim2-server accepts the token, lists, has ETags (hint rfc); one refusing listing and
    serving no ServiceProviderConfig gets the entra hint; a refused token is an AuthError."""
    from scimflow.connectors.scim import probe

    found = probe(client_for(scim_app(), "entra"))
    assert (found.token_accepted, found.listing, found.etags, found.patch, found.dialect_hint) == (
        True, True, True, True, "rfc",
    )  # fmt: skip

    def gateway(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.url.path.endswith("/ServiceProviderConfig"):
            return httpx.Response(404)
        if "startIndex" in request.url.params and "filter" not in request.url.params:
            return httpx.Response(501)
        return None

    client, t = faulty_client(scim_app(), gateway, dialect="entra")
    found = probe(client)
    assert (found.token_accepted, found.listing, found.etags, found.dialect_hint) == (True, False, None, "entra")
    assert {m for m, _ in t.seen} == {"GET"}  # read-only
    refused, _ = faulty_client(scim_app(), lambda r, n: httpx.Response(401), dialect="entra")
    with pytest.raises(AuthError, match="token refused"):
        probe(refused)


def test_logs_never_hold_the_token_or_filter_values(caplog: pytest.LogCaptureFixture) -> None:
    """Retries are logged with the method and a sanitised URL: the token appears in no log, the userName in
    none of scimflow's."""
    caplog.set_level("DEBUG")
    storm = {"left": 2}

    def fault(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "GET" and storm["left"] > 0:
            storm["left"] -= 1
            return httpx.Response(503)
        return None

    client, _ = faulty_client(scim_app(), fault, dialect="entra")
    client.create_user({"user_name": "secret.person@contoso.com"})
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("scimflow")]
    assert any("retrying" in m for m in ours)
    assert TOKEN not in caplog.text
    assert not [m for m in ours if "secret.person" in m]


def test_rfc_bodies_are_valid_scim2_models_requests() -> None:
    """Every rfc body validates as scim2-models' creation or PATCH request of its resource (RFC 7643/7644)."""
    from scim2_models import Context, Group, PatchOp, User

    from scimflow.connectors.scim._mapping import group_body, member_patches, patch_body, user_body, user_patch_ops

    values = {"user_name": "a", "entra_id": "o", "first_name": "A", "last_name": "B", "display_name": "A B",
              "email": "a@b.com", "title": "T", "mobile_phone": "1"}  # fmt: skip
    user = User.model_validate(user_body(values, "rfc"), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    assert (user.user_name, user.name and user.name.formatted, user.active) == ("a", "A B", True)
    changes = {"last_name": "C", "email": "x@y.com", "mobile_phone": None, "active": False, "user_name": "z"}
    patch = PatchOp[User].model_validate(
        patch_body(user_patch_ops(changes, {"first_name": "A"}, "rfc")), scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    assert [(o.op.value, o.path) for o in patch.operations or []] == [
        ("replace", "name.familyName"), ("replace", "emails"), ("remove", 'phoneNumbers[type eq "mobile"]'),
        ("replace", "active"), ("replace", "userName"), ("replace", "name.formatted"),
    ]  # fmt: skip
    Group.model_validate(group_body("scimflow:role:X", "rfc"), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    bodies = member_patches(["1", "2", "3"], ["4", "5"], "rfc", batch=2)
    ops = [PatchOp[Group].model_validate(b, scim_ctx=Context.RESOURCE_PATCH_REQUEST).operations for b in bodies]
    assert [[(o.op.value, o.path) for o in part or []] for part in ops] == [
        [("add", "members")], [("add", "members")],
        [("remove", 'members[value eq "4"]'), ("remove", 'members[value eq "5"]')],
    ]  # fmt: skip
