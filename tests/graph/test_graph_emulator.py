"""The Graph emulator over real HTTPS sockets, driven with plain httpx as any Graph client would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import msal
import pytest
from graph_helpers import SECRET, Running, running

from scimflow.connectors.http import ssl_context
from scimflow.emulators.graph import generate_tenant
from scimflow.emulators.pki import self_signed_certificate
from scimflow.emulators.serve import TIMER_GRAIN

DEFAULT_11 = {
    "businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName",
}
SALES = "a0b00001-1111-4222-8333-444455550001"
SALES_OSLO = "a0b00003-1111-4222-8333-444455550003"
OLA = "6f1c0002-2b3a-4c5d-9e8f-0a1b2c3d0002"
KARI = "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001"


class Api:
    """A tiny Graph client for the tests: token via client secret, then GETs with the bearer token."""

    def __init__(self, run: Running) -> None:
        self.run = run
        self.http = httpx.Client(verify=ssl_context(run.ca), trust_env=False, timeout=10)
        self.token = self.new_token()

    def new_token(self, **form: str) -> str:
        r = self.token_request(**form)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def token_request(self, **form: str) -> httpx.Response:
        s = self.run.emulator.settings
        data = {"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": SECRET,
                "scope": "https://graph.microsoft.com/.default", **form}
        return self.http.post(f"{self.run.origin}/{s.tenant_id}/oauth2/v2.0/token", data=data)

    def get(self, path_or_url: str, **kwargs: Any) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("https://") else self.run.origin + path_or_url
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.get(url, headers=headers, **kwargs)

    def all_pages(self, path: str, **kwargs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every item and every page body, following nextLinks (and stopping at a deltaLink)."""
        items, bodies = [], []
        url: str | None = path
        while url:
            r = self.get(url, **kwargs)
            assert r.status_code == 200, r.text
            body = r.json()
            bodies.append(body)
            items.extend(body["value"])
            url = body.get("@odata.nextLink")
        return items, bodies


@pytest.fixture
def api(example: Running) -> Iterator[Api]:
    """A client against the read-only worked example."""
    client = Api(example)
    yield client
    client.http.close()


@pytest.fixture
def fresh(tls) -> Iterator[Api]:
    """A client against a fresh, mutable emulator with the worked example."""
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parents[1] / "fixtures" / "graph.json").read_text())
    with running(tls, data) as run:
        client = Api(run)
        yield client
        client.http.close()


def assert_graph_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    inner = err["innerError"]
    assert inner["request-id"] == r.headers["request-id"]
    assert {"date", "client-request-id"} <= set(inner)


def test_discovery_document_is_what_msal_needs(api: Api) -> None:
    """OIDC metadata names the tenant's token and authorization endpoints and the issuer."""
    r = api.http.get(f"{api.run.origin}/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
    doc = r.json()
    assert doc["token_endpoint"] == f"{api.run.origin}/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
    assert doc["issuer"] == f"{api.run.origin}/contoso.onmicrosoft.com/v2.0"


def test_token_endpoint_refuses_wrong_secret_and_scope(api: Api) -> None:
    """A wrong secret is 401 invalid_client (AADSTS7000215); a scope without /.default is invalid_scope."""
    r = api.token_request(client_secret="nope")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client" and r.json()["error_codes"] == [7000215]
    assert api.token_request(scope="User.Read").json()["error"] == "invalid_scope"
    ok = api.token_request().json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3599


def test_client_assertion_checks_audience_and_thumbprint(tls, graph_fixture) -> None:
    """An assertion for the wrong audience or an unknown thumbprint is refused; msal's own one is accepted."""
    key_pem, cert_pem, thumb = self_signed_certificate("emu-test")
    with running(tls, graph_fixture, client_secret=None, certificate_thumbprints={thumb: cert_pem}) as run:
        api = Api.__new__(Api)
        api.run, api.http = run, httpx.Client(verify=ssl_context(run.ca), trust_env=False)
        s = run.emulator.settings
        endpoint = f"{run.origin}/{s.tenant_id}/oauth2/v2.0/token"
        x5t = jwt.utils.base64url_encode(bytes.fromhex(thumb)).decode()

        def assertion(aud: str, kid: str = x5t) -> str:
            now = int(time.time())
            claims = {"aud": aud, "iss": s.client_id, "sub": s.client_id, "exp": now + 600, "iat": now,
                      "jti": str(uuid.uuid4())}
            return jwt.encode(claims, key_pem, algorithm="RS256", headers={"x5t": kid})

        def post(token: str) -> httpx.Response:
            return api.http.post(endpoint, data={
                "grant_type": "client_credentials", "client_id": s.client_id, "scope": "https://graph.microsoft.com/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": token,
            })

        assert post(assertion(endpoint)).status_code == 200
        assert post(assertion("https://elsewhere/token")).status_code == 401
        other = jwt.utils.base64url_encode(b"\x01" * 20).decode()
        assert post(assertion(endpoint, other)).json()["error_codes"] == [700027]
        app = msal.ConfidentialClientApplication(
            s.client_id, client_credential={"private_key": key_pem.decode(), "thumbprint": thumb},
            authority=f"{run.origin}/{s.tenant_id}", instance_discovery=False, http_client=_MsalShim(api.http),
        )
        assert "access_token" in app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
        api.http.close()


class _MsalShim:
    """msal needs get/post; httpx would stringify the bytes assertion msal passes, so decode it."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def post(self, url, params=None, data=None, headers=None, **kw):
        data = {k: v.decode() if isinstance(v, bytes) else v for k, v in (data or {}).items()}
        return self.http.post(url, params=params, data=data, headers={k: v for k, v in (headers or {}).items() if v})

    def get(self, url, params=None, headers=None, **kw):
        return self.http.get(url, params=params, headers={k: v for k, v in (headers or {}).items() if v})


def test_users_default_properties_and_select(api: Api) -> None:
    """Without $select exactly the 11 default properties come back; with it, id plus what was asked."""
    plain = api.get("/v1.0/users").json()
    assert all(set(u) == DEFAULT_11 for u in plain["value"])
    assert plain["@odata.context"].endswith("/v1.0/$metadata#users")
    chosen = api.get("/v1.0/users", params={"$select": "accountEnabled,department"}).json()
    assert all(set(u) == {"id", "accountEnabled", "department"} for u in chosen["value"])
    assert chosen["@odata.context"].endswith("#users(accountEnabled,department)")
    assert_graph_error(api.get("/v1.0/users", params={"$select": "nope"}), 400, "Request_BadRequest")


def test_paging_uses_absolute_next_links_with_opaque_skiptoken(api: Api) -> None:
    """$top=1 gives four pages; each nextLink is absolute, keeps the query, and a forged token is refused."""
    items, bodies = api.all_pages("/v1.0/users?$top=1&$select=id")
    assert len(items) == 4 and len(bodies) == 4
    link = bodies[0]["@odata.nextLink"]
    assert link.startswith(api.run.origin + "/v1.0/users?")
    q = parse_qs(urlsplit(link).query)
    assert q["$top"] == ["1"] and q["$select"] == ["id"] and q["$skiptoken"]
    forged = link.replace(q["$skiptoken"][0], q["$skiptoken"][0][:-3] + "AAA")
    assert_graph_error(api.get(forged), 400, "Request_BadRequest")
    assert_graph_error(api.get(link.replace("$top=1", "$top=2")), 400, "Request_BadRequest")


@pytest.mark.parametrize("top", ["0", "1000", "x"], ids=["zero", "over-999", "not-a-number"])
def test_top_out_of_range_is_a_graph_400(api: Api, top: str) -> None:
    """$top outside 1..999 answers 400 with Graph's error body and a request-id header."""
    r = api.get("/v1.0/users", params={"$top": top})
    assert_graph_error(r, 400, "Request_BadRequest")
    assert "between 1 and 999" in r.json()["error"]["message"]


def test_skip_is_not_supported(api: Api) -> None:
    """$skip on /users is refused with 400."""
    assert_graph_error(api.get("/v1.0/users", params={"$skip": "2"}), 400, "Request_BadRequest")


@pytest.mark.parametrize(
    ("expr", "upns"),
    [
        ("userPrincipalName eq 'KARI.nordmann@contoso.com'", {"kari.nordmann@contoso.com"}),
        ("accountEnabled eq false", {"sara.lind@contoso.com"}),
        ("department in ('Support','HR')", {"sara.lind@contoso.com", "per.berg@contoso.com"}),
        ("startsWith(displayName,'ola') or country eq 'SE'", {"Ola.Hansen@contoso.com", "sara.lind@contoso.com"}),
        ("department eq 'Sales' and accountEnabled eq true", {"kari.nordmann@contoso.com", "Ola.Hansen@contoso.com"}),
    ],
    ids=["eq-case-insensitive", "bool", "in", "startswith-or", "and"],
)
def test_filter_simple_operators(api: Api, expr: str, upns: set[str]) -> None:
    """eq, in, startsWith and accountEnabled eq true|false work without advanced-query headers."""
    r = api.get("/v1.0/users", params={"$filter": expr, "$select": "userPrincipalName"})
    assert r.status_code == 200, r.text
    assert {u["userPrincipalName"] for u in r.json()["value"]} == upns


def test_advanced_operators_need_consistency_level(api: Api) -> None:
    """ne and endsWith are Request_UnsupportedQuery unless ConsistencyLevel: eventual and $count=true are sent."""
    assert_graph_error(api.get("/v1.0/users", params={"$filter": "country ne 'NO'"}), 400, "Request_UnsupportedQuery")
    r = api.get("/v1.0/users", params={"$filter": "country ne 'NO'", "$count": "true"},
                headers={"ConsistencyLevel": "eventual"})
    assert r.status_code == 200 and r.json()["@odata.count"] == 1


def test_transitive_members_expand_nested_groups(api: Api) -> None:
    """SO Sales lists Kari, the nested Sales Oslo group (typed) and Ola through it; the cast keeps users only."""
    items, _ = api.all_pages(f"/v1.0/groups/{SALES}/transitiveMembers?$select=id,displayName")
    assert {(i["@odata.type"], i["id"]) for i in items} == {
        ("#microsoft.graph.user", KARI), ("#microsoft.graph.group", SALES_OSLO), ("#microsoft.graph.user", OLA),
    }
    users, _ = api.all_pages(f"/v1.0/groups/{SALES}/transitiveMembers/microsoft.graph.user?$select=id")
    assert {u["id"] for u in users} == {KARI, OLA}
    assert_graph_error(api.get("/v1.0/groups/nope/transitiveMembers"), 404, "Request_ResourceNotFound")
    member_of, _ = api.all_pages(f"/v1.0/users/{OLA}/transitiveMemberOf?$select=id,displayName")
    assert {g["displayName"] for g in member_of} == {"SO Sales", "Sales Oslo", "Employees"}


def test_bad_or_missing_token_is_401(api: Api) -> None:
    """A missing, unknown or revoked token is 401 InvalidAuthenticationToken."""
    assert_graph_error(api.http.get(f"{api.run.origin}/v1.0/users"), 401, "InvalidAuthenticationToken")
    api.token = "emu.forged"
    assert_graph_error(api.get("/v1.0/users"), 401, "InvalidAuthenticationToken")


def test_expired_token_is_401(fresh: Api) -> None:
    """A token past its lifetime is refused."""
    fresh.run.knobs(token_lifetime=1)
    fresh.token = fresh.new_token()
    time.sleep(1.1)
    r = fresh.get("/v1.0/users")
    assert_graph_error(r, 401, "InvalidAuthenticationToken")
    assert "expired" in r.json()["error"]["message"]


def test_delta_initial_round_then_changes(fresh: Api) -> None:
    """A delta round pages to a deltaLink; the next round reports adds, changes, @removed and members@delta."""
    fresh.run.knobs(delta_page_size=2)
    users, bodies = fresh.all_pages("/v1.0/users/delta?$select=displayName,jobTitle,accountEnabled")
    assert len(users) == 4 and "@odata.deltaLink" in bodies[-1] and len(bodies) >= 2
    groups, gbodies = fresh.all_pages("/v1.0/groups/delta?$select=displayName,members")
    sales = next(g for g in groups if g["id"] == SALES)
    assert {m["id"] for m in sales["members@delta"]} == {KARI, SALES_OSLO}
    ulink, glink = bodies[-1]["@odata.deltaLink"], gbodies[-1]["@odata.deltaLink"]
    assert parse_qs(urlsplit(ulink).query).keys() == {"$deltatoken"}

    run = fresh.run
    run.admin("PATCH", f"/_emulator/users/{OLA}", json={"jobTitle": "Boss"})
    run.admin("PATCH", f"/_emulator/users/{KARI}", json={"officeLocation": "Bergen"})  # not selected: not tracked
    run.admin("DELETE", "/_emulator/users/6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003")
    run.admin("DELETE", "/_emulator/users/6f1c0004-2b3a-4c5d-9e8f-0a1b2c3d0004", params={"permanent": "true"})
    new = run.admin("POST", "/_emulator/users", json={"userPrincipalName": "n@contoso.com", "displayName": "N"}).json()
    run.admin("POST", f"/_emulator/groups/{SALES_OSLO}/members", json={"id": new["id"]})
    run.admin("DELETE", f"/_emulator/groups/{SALES}/members/{KARI}")

    changed, _ = fresh.all_pages(ulink, headers={"Prefer": "return=minimal"})
    by_id = {u["id"]: u for u in changed}
    assert by_id[OLA] == {"id": OLA, "jobTitle": "Boss"}
    assert KARI not in by_id
    assert by_id["6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"]["@removed"] == {"reason": "changed"}
    assert by_id["6f1c0004-2b3a-4c5d-9e8f-0a1b2c3d0004"]["@removed"] == {"reason": "deleted"}
    assert by_id[new["id"]]["displayName"] == "N"
    gchanged, _ = fresh.all_pages(glink)
    deltas = {g["id"]: g.get("members@delta", []) for g in gchanged}
    assert {"@odata.type": "#microsoft.graph.user", "id": new["id"]} in deltas[SALES_OSLO]
    assert {"@odata.type": "#microsoft.graph.user", "id": KARI, "@removed": {"reason": "deleted"}} in deltas[SALES]


def test_delta_splits_large_groups_over_pages(tls) -> None:
    """A group with more members than a slice appears on several pages, each with a slice of members@delta."""
    data = generate_tenant(30, 1, seed=2)
    with running(tls, data, delta_members_per_slice=7) as run:
        api = Api(run)
        groups, bodies = api.all_pages("/v1.0/groups/delta?$select=displayName,members")
        assert len(bodies) == 5 and all(g["id"] == data["groups"][0]["id"] for g in groups)
        merged = [m["id"] for g in groups for m in g["members@delta"]]
        assert sorted(merged) == sorted(data["groups"][0]["members"])
        api.http.close()


def test_deltatoken_latest_returns_no_data(api: Api) -> None:
    """$deltatoken=latest gives an empty value and a deltaLink that reports nothing yet."""
    body = api.get("/v1.0/users/delta?$select=displayName&$deltatoken=latest").json()
    assert body["value"] == [] and "@odata.deltaLink" in body
    again = api.get(body["@odata.deltaLink"]).json()
    assert again["value"] == [] and "@odata.deltaLink" in again


def test_expired_delta_tokens(fresh: Api) -> None:
    """With expire_delta_tokens a deltaLink answers 410 resyncRequired with Location, or 400 syncStateNotFound."""
    _, bodies = fresh.all_pages("/v1.0/users/delta?$select=displayName")
    link = bodies[-1]["@odata.deltaLink"]
    fresh.run.knobs(expire_delta_tokens=True)
    r = fresh.get(link)
    assert_graph_error(r, 410, "resyncRequired")
    assert r.headers["Location"].startswith(fresh.run.origin + "/v1.0/users/delta?$select=id,displayName")
    fresh.run.knobs(delta_expired_status=400)
    assert_graph_error(fresh.get(link), 400, "syncStateNotFound")
    assert_graph_error(fresh.get("/v1.0/users/delta?$deltatoken=bogus"), 400, "syncStateNotFound")


def test_throttling_and_errors_are_graph_shaped(fresh: Api) -> None:
    """throttle_next gives 429 TooManyRequests with the configured Retry-After; error_rate 1 gives 503."""
    fresh.run.knobs(throttle_next=1, retry_after="0.2")
    r = fresh.get("/v1.0/users")
    assert_graph_error(r, 429, "TooManyRequests")
    assert r.headers["Retry-After"] == "0.2"
    assert fresh.get("/v1.0/users").status_code == 200
    fresh.run.knobs(error_rate=1.0)
    assert fresh.get("/v1.0/users").status_code == 503
    fresh.run.knobs(error_rate=0.0, rate_limit_rps=2.0)
    statuses = [fresh.get("/v1.0/users?$select=id").status_code for _ in range(6)]
    assert statuses[:2] == [200, 200] and 429 in statuses
    stats = fresh.run.stats()
    assert stats["throttled"] >= 2 and stats["errors"] == 1


def test_latency_does_not_block_the_event_loop(fresh: Api) -> None:
    """Four concurrent requests with 0.3 s latency finish in well under 4 × 0.3 s."""
    fresh.run.knobs(latency=0.3)

    async def burst() -> float:
        async with httpx.AsyncClient(verify=ssl_context(fresh.run.ca), trust_env=False) as c:
            started = time.monotonic()
            await asyncio.gather(*(c.get(f"{fresh.run.origin}/v1.0/users",
                                         headers={"Authorization": f"Bearer {fresh.token}"}) for _ in range(4)))
            return time.monotonic() - started

    elapsed = asyncio.run(burst())
    assert 0.3 <= elapsed < 0.9


def test_answers_leave_at_their_latency_never_early(fresh: Api) -> None:
    """Sequential answers at 30 ms latency: none arrives before 30 ms minus half the timer grain (the
    emulator centres its millisecond-grained timers on the deadline), and they are not systematically late."""
    fresh.run.knobs(latency=0.03)
    with httpx.Client(verify=ssl_context(fresh.run.ca), trust_env=False) as c:
        c.get(f"{fresh.run.origin}/v1.0/users", headers={"Authorization": f"Bearer {fresh.token}"})  # connect
        times = []
        for _ in range(10):
            started = time.monotonic()
            c.get(f"{fresh.run.origin}/v1.0/users", headers={"Authorization": f"Bearer {fresh.token}"})
            times.append(time.monotonic() - started)
    assert min(times) >= 0.03 - TIMER_GRAIN / 2
    assert sorted(times)[len(times) // 2] < 0.03 + 0.015  # the median: scheduling noise, not a lost millisecond


def test_knobs_snapshot_stats_and_reset(fresh: Api) -> None:
    """Settings reject unknown names; snapshot shows mutations; stats count requests; reset zeroes them."""
    with pytest.raises(httpx.HTTPStatusError):
        fresh.run.admin("POST", "/_emulator/settings", json={"no_such_knob": 1})
    fresh.get("/v1.0/users")
    stats = fresh.run.stats()
    assert stats["requests"] >= 2 and stats["token_requests"] == 1 and stats["graph_requests"] == 1
    assert fresh.run.emulator.request_count == stats["requests"]
    fresh.run.admin("POST", f"/_emulator/groups/{SALES}/members", json={"id": "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"})
    snap = fresh.run.admin("GET", "/_emulator/snapshot").json()
    assert "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003" in next(g for g in snap["groups"] if g["id"] == SALES)["members"]
    assert snap == fresh.run.emulator.snapshot()
    fresh.run.reset()
    assert fresh.run.stats()["requests"] == 0


def test_every_response_has_a_request_id(api: Api) -> None:
    """Graph, identity and unknown routes all carry a request-id header; client-request-id is echoed."""
    r = api.get("/v1.0/nothing", headers={"client-request-id": "abc"})
    assert_graph_error(r, 400, "BadRequest")
    assert r.headers["client-request-id"] == "abc"
    assert api.token_request().headers["request-id"]
