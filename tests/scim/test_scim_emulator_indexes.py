"""The SCIM emulator's storage indexes (uniqueness, filter look-ups) stay right through creates, PATCHes, replaces and
deletes, and its cached readers read what scim2-models' ``Path.get`` reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from scim2_models import Path

from scimflow.emulators.scim import ScimEmulator, ScimEmulatorSettings, scim_provider, tree_copy
from scimflow.emulators.scim._server import load_resources
from scimflow.emulators.scim._storage import reader

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _replace(path: str, value: Any) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "path": path, "value": value}]}


async def _script(c: httpx.AsyncClient, base: str) -> list[tuple[str, int, Any]]:
    """Writes that move unique and filtered values around, each followed by the look-ups they affect."""
    out: list[tuple[str, int, Any]] = []
    ids: dict[str, str] = {}

    async def note(step: str, r: httpx.Response) -> None:
        body = r.json() if r.content else None
        if isinstance(body, dict) and body.get("Resources") is not None:
            body = sorted(ids.get(x["id"], x["id"]) for x in body["Resources"])  # which resources, by name
        elif isinstance(body, dict):
            body = {k: body[k] for k in ("status", "scimType") if k in body} or "resource"
        out.append((step, r.status_code, body))

    async def find(kind: str, expr: str) -> None:
        await note(f"filter {kind} {expr}", await c.get(f"{base}/{kind}", params={"filter": expr}))

    for name in ("ann", "bob", "cid"):
        body = {"schemas": [USER], "userName": f"{name}@x", "externalId": f"ext-{name}"}
        r = await c.post(f"{base}/Users", json=body)
        ids[r.json()["id"]] = name
        await note(f"create {name}", r)
    by_name = {v: k for k, v in ids.items()}
    await find("Users", 'userName eq "ANN@X"')  # userName is case-insensitive (caseExact false)
    await find("Users", 'externalId eq "ext-bob"')
    await note("create taken userName", await c.post(f"{base}/Users", json={"schemas": [USER], "userName": "Bob@X"}))
    await note("patch userName", await c.patch(f"{base}/Users/{by_name['ann']}", json=_replace("userName", "anna@x")))
    await find("Users", 'userName eq "ann@x"')
    await find("Users", 'userName eq "anna@x"')
    r = await c.post(f"{base}/Users", json={"schemas": [USER], "userName": "ann@x"})
    ids[r.json().get("id", "")] = "ann2"
    await note("reuse freed userName", r)
    await find("Users", 'userName eq "ann@x"')
    await note(
        "patch to a taken userName", await c.patch(f"{base}/Users/{by_name['bob']}", json=_replace("userName", "CID@x"))
    )
    await find("Users", 'userName eq "bob@x"')
    await note(
        "patch externalId", await c.patch(f"{base}/Users/{by_name['bob']}", json=_replace("externalId", "ext-b"))
    )
    await find("Users", 'externalId eq "ext-bob"')
    await find("Users", 'externalId eq "ext-b"')
    await note(
        "replace cid",
        await c.put(
            f"{base}/Users/{by_name['cid']}", json={"schemas": [USER], "userName": "cyd@x", "externalId": "ext-c"}
        ),
    )
    await find("Users", 'userName eq "cid@x"')
    await find("Users", 'userName eq "cyd@x"')
    await find("Users", 'externalId eq "ext-c"')
    await note("delete bob", await c.delete(f"{base}/Users/{by_name['bob']}"))
    await find("Users", 'externalId eq "ext-b"')
    await note(
        "bob's userName free again", await c.post(f"{base}/Users", json={"schemas": [USER], "userName": "bob@x"})
    )

    r = await c.post(f"{base}/Groups", json={"schemas": [GROUP], "displayName": "staff", "externalId": "g-staff"})
    gid = r.json()["id"]
    ids[gid] = "staff"
    await note("create group", r)
    await find("Groups", 'displayName eq "staff"')
    add = {"op": "add", "path": "members", "value": [{"value": by_name["ann"]}, {"value": by_name["cid"]}]}
    await note("member patch", await c.patch(f"{base}/Groups/{gid}", json={"schemas": [PATCH], "Operations": [add]}))
    await find("Groups", 'displayName eq "staff"')
    await find("Groups", 'externalId eq "g-staff"')
    await note("rename group", await c.patch(f"{base}/Groups/{gid}", json=_replace("displayName", "crew")))
    await find("Groups", 'displayName eq "staff"')
    await find("Groups", 'displayName eq "crew"')
    remove = {"op": "remove", "path": f'members[value eq "{by_name["ann"]}"]'}
    await note(
        "member removal", await c.patch(f"{base}/Groups/{gid}", json={"schemas": [PATCH], "Operations": [remove]})
    )
    await find("Groups", 'displayName eq "crew"')
    group = (await c.get(f"{base}/Groups/{gid}")).json()
    out.append(("members", 200, [ids[m["value"]] for m in group["members"]]))
    return out


def _run(app: Any, base: str, headers: dict[str, str]) -> list[tuple[str, int, Any]]:
    async def run() -> list[tuple[str, int, Any]]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
            return await _script(c, base)

    return asyncio.run(run())


def test_indexes_follow_writes_as_scim2_server_does() -> None:
    """Filters by userName, externalId and displayName, and 409 on a taken userName, answer after creates, PATCHes,
    a replace, a delete and member PATCHes exactly as scim2-server's own application does."""
    from scim2_server.applications.asgi import ASGIApplication
    from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage
    from scim2_server.service import ScimService

    provider = scim_provider("rfc")
    library = ASGIApplication(AsyncInMemoryStorage(InMemoryStorage()), provider, ScimService(provider))
    emulator = ScimEmulator({}, ScimEmulatorSettings(dialect="rfc", token="t"))
    ours = _run(emulator.app, "/scim/v2", {"Authorization": "Bearer t"})
    theirs = _run(library, "/v2", {})
    assert ours == theirs
    answers = {step: (status, body) for step, status, body in ours}
    assert answers['filter Users userName eq "ANN@X"'] == (200, ["ann"])
    assert answers["create taken userName"] == (409, {"status": "409", "scimType": "uniqueness"})
    assert answers["patch to a taken userName"][0] == 409
    assert answers["reuse freed userName"][0] == 201
    assert answers['filter Users userName eq "ann@x"'] == (200, ["ann2"])  # the last look-up of it: the new user
    assert answers['filter Users userName eq "anna@x"'] == (200, ["ann"])
    assert answers['filter Users externalId eq "ext-b"'] == (200, [])  # bob deleted
    assert answers['filter Users userName eq "cid@x"'] == (200, [])  # cid replaced as cyd
    assert answers["bob's userName free again"][0] == 201
    assert answers['filter Groups displayName eq "staff"'] == (200, [])  # renamed
    assert answers['filter Groups displayName eq "crew"'] == (200, ["staff"])
    assert answers["members"] == (200, ["cid"])
    assert emulator.stats()["windowed_member_patches"] == 2


@pytest.mark.parametrize("dialect", ["rfc", "entra"])
@pytest.mark.parametrize(
    "path",
    [
        "userName",
        "externalId",
        "displayName",
        "emails",
        "groups",
        "name",
        "name.familyName",
        'emails[type eq "work"]',
        f"{USER}:userName",
        f"{ENTERPRISE}:manager",
        f"{ENTERPRISE}:employeeNumber",
    ],
    ids=lambda p: p.rsplit(":", 1)[-1] if ":" in p else p,
)
def test_reader_reads_as_path_get(path: str, dialect: str) -> None:
    """The storage's cached reader of an attribute answers what Path.get answers, set or not, extension or not."""
    provider = scim_provider(dialect)
    users = load_resources(
        provider,
        {
            "users": [
                {"userName": "a@x"},
                {
                    "schemas": [USER, ENTERPRISE],
                    "userName": "b@x",
                    "externalId": "e",
                    "displayName": "B",
                    "name": {"familyName": "Bee"},
                    "emails": [{"value": "b@x", "type": "work"}],
                    ENTERPRISE: {"employeeNumber": "7", "manager": {"value": "m"}},
                },
            ]
        },
        "test",
    )
    with provider:
        for user in users:
            read = reader(type(user), path)
            assert read(user) == Path(path).get(user, strict=False)
            assert json.dumps(tree_copy(user).model_dump(mode="json")) == json.dumps(user.model_dump(mode="json"))
