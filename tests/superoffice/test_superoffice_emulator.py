"""The SuperOffice emulator on its own: login service, Web API semantics, knobs, scale."""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import Any

import httpx
import jwt
import pytest

from scimflow.connectors.http import ssl_context
from scimflow.connectors.superoffice import TICKET_CLAIM, sign_system_user_token
from scimflow.emulators.generate import generate_tenant as generate_joint_tenant
from scimflow.emulators.superoffice import FixtureError, SuperOfficeEmulator
from scimflow.emulators.superoffice._generate import generate_tenant
from scimflow.emulators.superoffice._state import Tenant

from .conftest import APP_TOKEN, CLIENT_ID, CTX, SYSTEM_USER_TOKEN, SoEnv


def raw(env: SoEnv) -> httpx.Client:
    return httpx.Client(base_url=env.served.origin, verify=ssl_context(env.ca), trust_env=False)


def authed(env: SoEnv) -> httpx.Client:
    """A Web API client carrying the target's ticket."""
    env.target.read_reference()  # obtains a ticket
    return env.web_api()


def test_snapshot_of_untouched_data_is_the_fixture(so: SoEnv, superoffice_fixture: dict[str, Any]) -> None:
    """The snapshot of a tenant nobody wrote to is exactly the fixture it was loaded from."""
    with raw(so) as c:
        assert c.get("/_emulator/snapshot").json() == superoffice_fixture


def test_web_api_refuses_missing_tickets_and_app_tokens(so: SoEnv) -> None:
    """No ticket is 401 and a wrong SO-AppToken 403, both with SuperOffice's {Error, ErrorType} body."""
    with raw(so) as c:
        r = c.get(f"/{CTX}/api/v1/User/11")
        assert r.status_code == 401
        assert set(r.json()) == {"Error", "ErrorType"}
    so.target.read_reference()
    ticket = next(iter(so.emulator._tickets))
    with raw(so) as c:
        r = c.get(f"/{CTX}/api/v1/User/11", headers={"Authorization": f"SOTicket {ticket}", "SO-AppToken": "nope"})
        assert r.status_code == 403
        assert r.json()["ErrorType"] == "InvalidApplicationToken"
        r = c.get(f"/{CTX}/api/v1/User/11", headers={"Authorization": f"SOTicket {ticket}", "SO-AppToken": APP_TOKEN})
        assert r.status_code == 200


def test_authenticate_checks_token_app_context_and_time(so: SoEnv, app_key: tuple[bytes, bytes]) -> None:
    """Authenticate issues an RS256 JWT (kid in JWKS, iss, aud, ticket) only for a fresh, valid signature."""

    def auth(**over: Any) -> dict[str, Any]:
        body = {
            "SignedSystemToken": sign_system_user_token(SYSTEM_USER_TOKEN, app_key[0]),
            "ApplicationToken": APP_TOKEN,
            "ContextIdentifier": CTX,
            "ReturnTokenType": "JWT",
            **over,
        }
        with raw(so) as c:
            return c.post("/login/api/PartnerSystemUser/Authenticate", json=body).json()

    ok = auth()
    assert ok["IsSuccessful"] is True
    with raw(so) as c:
        jwks = c.get("/login/.well-known/jwks").json()
    header = jwt.get_unverified_header(ok["Token"])
    key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == header["kid"])
    claims = jwt.decode(ok["Token"], key.key, algorithms=["RS256"], audience=CLIENT_ID, issuer=so.served.origin)
    assert claims[TICKET_CLAIM]
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    for over in (
        {"ApplicationToken": "wrong"},
        {"ContextIdentifier": "Cust999"},
        {"SignedSystemToken": sign_system_user_token(SYSTEM_USER_TOKEN, app_key[0], now=old)},
        {"SignedSystemToken": sign_system_user_token("other-token", app_key[0])},
    ):
        refused = auth(**over)
        assert refused["IsSuccessful"] is False
        assert refused["Token"] is None


def test_archive_select_filter_top_and_next_link(so_factory: Any) -> None:
    """The user archive honours $select, oneOf/eq/begins filters, the $top cap and odata.nextLink."""
    env: SoEnv = so_factory(generate_tenant(50, seed=2), page_size_max=20)
    c = authed(env)
    page = c.get("api/v1/User", params={"$select": "associateDbId,userName", "$top": 1000}).json()
    assert len(page["value"]) == 20
    assert set(page["value"][0]) == {"PrimaryKey", "EntityName", "associateDbId", "userName"}
    assert "$skip=20" in page["odata.nextLink"]
    assert "$top=20" in page["odata.nextLink"]
    page2 = c.get(page["odata.nextLink"]).json()
    assert [r["associateDbId"] for r in page2["value"]] == list(range(120, 140))
    last = c.get("api/v1/User", params={"$select": "associateDbId", "$skip": 40}).json()
    assert len(last["value"]) == 10
    assert "odata.nextLink" not in last
    some = c.get("api/v1/User", params={"$select": "associateDbId", "$filter": "associateDbId oneOf(101,105,999)"})
    assert [r["associateDbId"] for r in some.json()["value"]] == [101, 105]
    name = page["value"][3]["userName"]
    one = c.get("api/v1/User", params={"$select": "associateDbId", "$filter": f"userName eq '{name.upper()}'"})
    assert [r["associateDbId"] for r in one.json()["value"]] == [103]
    begins = c.get("api/v1/User", params={"$select": "assocName", "$filter": "assocName begins 'K' and isActive eq 1"})
    assert begins.json()["value"]
    assert all(r["assocName"].startswith("K") for r in begins.json()["value"])
    bad = c.get("api/v1/User", params={"$filter": "userName frobnicate 'x'"})
    assert bad.status_code == 400


def test_patch_test_ops_case_insensitive_paths_and_merge_patch(so: SoEnv) -> None:
    """PATCH applies JSON Patch with case-insensitive paths, answers 409 on a failed test, and takes merge patches."""
    c = authed(so)
    r = c.patch(
        "api/v1/User/11",
        json=[
            {"op": "test", "path": "role/value", "value": "Sales"},
            {"op": "replace", "path": "/ROLE", "value": {"Id": 4}},
        ],
    )
    assert r.status_code == 200
    assert r.json()["Role"] == {"Id": 4, "Value": "Manager"}
    r = c.patch(
        "api/v1/User/11",
        json=[
            {"op": "test", "path": "/Role/Value", "value": "Sales"},
            {"op": "replace", "path": "/Role", "value": {"Id": 2}},
        ],
    )
    assert r.status_code == 409
    assert r.json()["ErrorType"] == "PatchTestFailed"
    r = c.patch(
        "api/v1/User/11", json={"UserGroup": {"Id": 3}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert r.status_code == 200
    assert r.json()["UserGroup"] == {"Id": 3, "Value": "Support"}
    snap = so.emulator.snapshot()
    kari = next(u for u in snap["users"] if u["AssociateId"] == 11)
    assert (kari["Role"]["Value"], kari["UserGroup"]["Value"]) == ("Manager", "Support")


def test_make_retired_and_remove_licenses(so: SoEnv) -> None:
    """MakeRetired removes licences and retires user and person; RemoveLicenses only strips licences."""
    c = authed(so)
    assert c.post("api/v1/Agents/User/RemoveLicenses", json={"AssociateId": 12}).status_code == 204
    assert c.post("api/v1/Agents/User/MakeRetired", json={"AssociateId": 11, "Retired": True}).status_code == 204
    assert c.post("api/v1/Agents/User/MakeRetired", json={"AssociateId": 404, "Retired": True}).status_code == 404
    users = {u["AssociateId"]: u for u in so.emulator.snapshot()["users"]}
    assert users[12]["LicenseOwners"][0]["RestrictedModuleLicenses"] == []
    assert users[12]["Deleted"] is False
    assert users[11]["Deleted"] is True
    assert users[11]["Person"]["Retired"] is True
    row = c.get("api/v1/User", params={"$select": "isActive", "$filter": "associateDbId eq 11"}).json()["value"][0]
    assert row["isActive"] is False


def test_knobs_stats_and_rate_limit(so: SoEnv) -> None:
    """Settings change at run time; the token bucket answers 429 with Retry-After; counters reset."""
    with raw(so) as c:
        assert c.post("/_emulator/settings", json={"rate_limit_rps": 2, "retry_after": "3"}).status_code == 200
        assert c.post("/_emulator/settings", json={"nope": 1}).status_code == 400
        statuses = [c.get("/login/.well-known/jwks") for _ in range(6)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert throttled
        assert throttled[0].headers["Retry-After"] == "3"
        stats = c.get("/_emulator/stats").json()
        assert stats["requests"] == 6
        assert stats["throttled"] == len(throttled)
        assert c.post("/_emulator/reset-counters").json()["requests"] == 0
        settings = c.post("/_emulator/settings", json={"rate_limit_rps": None}).json()
        assert "app_token" not in settings


def test_a_large_tenant_pages_fast() -> None:
    """At 30,000 users (100,000 in bench/superoffice_read.py), paging the whole archive by slicing stays quick."""
    tenant = Tenant(generate_tenant(30_000, seed=1))
    started = time.perf_counter()
    rows = 0
    for skip in range(0, 30_000, 1000):
        page, _ = tenant.archive(
            "AllUsers", ["associateDbId", "userName", "role", "superoffice_ten-sales"], None, skip, 1000
        )
        rows += len(page)
    one, _ = tenant.archive("AllUsers", ["associateDbId"], "userName eq 'kari.nordmann.5@contoso.com'", 0, 10)
    assert rows == 30_000
    assert len(one) <= 1
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(
    "path", ["/Cust999/api/v1/User/11", "/Cust12345/api/v1/MDOList/nosuchlist"], ids=["unknown-tenant", "unknown-list"]
)
def test_unknown_tenants_and_lists_are_404(so: SoEnv, path: str) -> None:
    """Requests for another tenant or an unknown list answer 404 with an error body."""
    c = authed(so)
    r = c.get(so.served.origin + path)
    assert r.status_code == 404
    assert "Error" in r.json()


@pytest.mark.parametrize(
    ("key", "second"),
    [("Name", {"Name": "kn"}), ("UserName", {"UserName": "KARI.NORDMANN@contoso.com"})],
    ids=["name", "user-name"],
)
def test_a_fixture_with_a_duplicate_unique_key_is_refused_at_load(
    superoffice_fixture: dict[str, Any], key: str, second: dict[str, Any]
) -> None:
    """Two users sharing a Name (User ID) or a UserName, in any case, are refused when loaded, naming both."""
    data = copy.deepcopy(superoffice_fixture)
    first = next(u for u in data["users"] if u["UserName"] == "kari.nordmann@contoso.com")
    assert first["Name"] == "KN"
    twin = {**copy.deepcopy(first), "AssociateId": 999, "Name": "ZZ", "UserName": "zz@contoso.com", "Person": None}
    data["users"].append({**twin, **second})
    with pytest.raises(FixtureError) as info:
        SuperOfficeEmulator(data)
    message = str(info.value)
    assert f"{key} {str(second[key]).casefold()!r}" in message
    assert f"(AssociateId {first['AssociateId']})" in message
    assert f"users[{len(data['users']) - 1}] (AssociateId 999)" in message


@pytest.mark.parametrize("seed", [0, 2, 7])
def test_generated_tenants_load(seed: int) -> None:
    """Generated tenants never repeat a Name or UserName (old logins made unique), so the emulator loads them."""
    _, superoffice = generate_joint_tenant(10_000, seed)
    assert len(Tenant(superoffice).users) == len(superoffice["users"])
    assert len(Tenant(generate_tenant(5_000, seed=seed)).users) == 5_000
