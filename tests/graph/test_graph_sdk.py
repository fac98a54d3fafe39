"""The Graph emulator answers what Microsoft's own Python SDK (msgraph-sdk, with azure-identity) sends.

The SDK is async (kiota over httpx): each test runs it with ``asyncio.run``. It is pointed at the emulator's
HTTPS origin (its request adapter's ``base_url``), trusts the emulator's CA (its httpx client and the
credential's ``connection_verify``), and gets its token from the emulator's token endpoint (``authority=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from azure.identity.aio import ClientSecretCredential
from graph_helpers import SECRET, Running, running

from scimflow.connectors.http import ssl_context
from scimflow.emulators.graph import generate_tenant
from scimflow.emulators.pki import TlsFiles

with warnings.catch_warnings():  # kiota_abstractions warns, at import, about a class of its own it deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph_core import GraphClientFactory

T = TypeVar("T")

#: The SDK's generated modules, imported lazily on first use, warn about classes of their own they deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def tenant(tls: TlsFiles) -> Iterator[Running]:
    """A generated tenant of 25 users in 6 groups (group 5 nested in group 4), this module's own."""
    with running(tls, generate_tenant(25, 6, seed=7)) as run:
        yield run


@contextlib.asynccontextmanager
async def sdk_client(run: Running) -> AsyncIterator[GraphServiceClient]:
    """A GraphServiceClient for the emulator: client-secret credential, the emulator's CA, its origin."""
    settings = run.emulator.settings
    credential = ClientSecretCredential(
        settings.tenant_id, settings.client_id, SECRET, authority=run.origin, connection_verify=str(run.ca)
    )
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=[str(urlsplit(run.origin).hostname)],
    )
    transport = httpx.AsyncHTTPTransport(verify=ssl_context(run.ca))
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(transport=transport, trust_env=False)
    )
    adapter = GraphRequestAdapter(auth, client=http)
    client = GraphServiceClient(request_adapter=adapter)
    adapter.base_url = f"{run.origin}/v1.0"
    try:
        yield client
    finally:
        await http.aclose()
        await transport.aclose()  # the SDK's middleware transport does not close the one it wraps
        await credential.close()


def with_sdk(run: Running, work: Callable[[GraphServiceClient], Awaitable[T]]) -> T:
    """Run ``work`` with an SDK client for ``run`` on a fresh event loop."""

    async def main() -> T:
        async with sdk_client(run) as client:
            return await work(client)

    return asyncio.run(main())


def _live_users(run: Running) -> dict[str, dict[str, Any]]:
    return {u["id"]: u for u in run.admin("GET", "/_emulator/snapshot").json()["users"]}


def test_users_list_pages_through_every_user(tenant: Running) -> None:
    """The SDK lists users 10 a page with $select, following @odata.nextLink, and gets every user once."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        top=10, select=["id", "displayName", "userPrincipalName"]
    )

    async def work(client: GraphServiceClient) -> list[list[tuple[str, str]]]:
        pages = []
        page = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
        while page is not None:
            pages.append([(str(u.id), str(u.user_principal_name)) for u in page.value or []])
            if not page.odata_next_link:
                break
            page = await client.users.with_url(page.odata_next_link).get()
        return pages

    pages = with_sdk(tenant, work)
    users = _live_users(tenant)
    assert [len(p) for p in pages] == [10, 10, len(users) - 20]
    assert sorted(p for page in pages for p in page) == sorted((i, u["userPrincipalName"]) for i, u in users.items())


def test_groups_and_their_members(tenant: Running) -> None:
    """The SDK reads every group and each group's direct members, as the emulator holds them."""

    async def work(client: GraphServiceClient) -> dict[str, set[str]]:
        groups = await client.groups.get()
        assert groups is not None
        out: dict[str, set[str]] = {}
        for group in groups.value or []:
            members = await client.groups.by_group_id(str(group.id)).members.get()
            assert members is not None
            out[str(group.display_name)] = {str(m.id) for m in members.value or []}
        return out

    got = with_sdk(tenant, work)
    snapshot = tenant.admin("GET", "/_emulator/snapshot").json()
    assert got == {g["displayName"]: set(g["members"]) for g in snapshot["groups"]}
    assert len(got) == 6


def test_count_needs_consistency_level_eventual(tenant: Running) -> None:
    """users/$count answers the number of users with ConsistencyLevel: eventual, and a 400 ODataError without."""

    async def work(client: GraphServiceClient) -> tuple[int | None, int | None, ODataError]:
        config: RequestConfiguration[Any] = RequestConfiguration()
        config.headers.add("ConsistencyLevel", "eventual")
        users = await client.users.count.get(request_configuration=config)
        groups = await client.groups.count.get(request_configuration=config)
        with pytest.raises(ODataError) as info:
            await client.users.count.get()
        return users, groups, info.value

    users, groups, error = with_sdk(tenant, work)
    assert users == len(_live_users(tenant))
    assert groups == 6
    assert error.response_status_code == 400
    assert error.error is not None
    assert error.error.code == "Request_BadRequest"


def test_an_unknown_user_is_an_odata_error(tenant: Running) -> None:
    """A 404 for an unknown user id reaches the SDK as ODataError with Graph's error code; a known one reads."""
    known = next(iter(_live_users(tenant)))

    async def work(client: GraphServiceClient) -> tuple[str, ODataError]:
        user = await client.users.by_user_id(known).get()
        assert user is not None
        with pytest.raises(ODataError) as info:
            await client.users.by_user_id("00000000-0000-0000-0000-00000000dead").get()
        return str(user.id), info.value

    got, error = with_sdk(tenant, work)
    assert got == known
    assert error.response_status_code == 404
    assert error.error is not None
    assert error.error.code == "Request_ResourceNotFound"


def test_delta_initial_round_then_the_next_through_the_delta_link(tenant: Running) -> None:
    """users/delta() pages to a deltaLink; after a change, that link returns the changed user only."""
    stats_before = tenant.stats()["delta_requests"]

    async def initial(client: GraphServiceClient) -> tuple[set[str], str, int]:
        ids: set[str] = set()
        pages = 0
        page = await client.users.delta.get()
        while page is not None:
            pages += 1
            ids |= {str(u.id) for u in page.value or []}
            if page.odata_next_link:
                page = await client.users.delta.with_url(page.odata_next_link).get()
                continue
            assert page.odata_delta_link
            return ids, page.odata_delta_link, pages
        raise AssertionError("delta ended without a deltaLink")

    ids, delta_link, pages = with_sdk(tenant, initial)
    assert ids == set(_live_users(tenant))
    assert tenant.stats()["delta_requests"] - stats_before == pages  # the delta() form is counted as delta

    changed = sorted(ids)[0]
    tenant.admin("PATCH", f"/_emulator/users/{changed}", json={"jobTitle": "Chief SDK Tester"})

    async def follow(client: GraphServiceClient) -> tuple[list[tuple[str, str | None]], str | None]:
        page = await client.users.delta.with_url(delta_link).get()
        assert page is not None
        return [(str(u.id), u.job_title) for u in page.value or []], page.odata_delta_link

    rows, next_link = with_sdk(tenant, follow)
    assert rows == [(changed, "Chief SDK Tester")]
    assert next_link


def test_groups_delta_returns_every_group_with_members(tenant: Running) -> None:
    """groups/delta() returns each group once, with its members (members@delta) in the SDK's model."""

    async def work(client: GraphServiceClient) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        page = await client.groups.delta.get()
        while page is not None:
            for g in page.value or []:
                members = (g.additional_data or {}).get("members@delta") or []
                out.setdefault(str(g.id), set()).update(str(m["id"]) for m in members)
            if not page.odata_next_link:
                break
            page = await client.groups.delta.with_url(page.odata_next_link).get()
        return out

    got = with_sdk(tenant, work)
    snapshot = tenant.admin("GET", "/_emulator/snapshot").json()
    assert got == {g["id"]: set(g["members"]) for g in snapshot["groups"]}
