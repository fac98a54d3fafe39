"""The SCIM writer behind the apply engine: scim2-server in process (both policies) and the SCIM emulator over HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_server.applications.wsgi import WSGIApplication

from scimflow.apply import Writer, apply_chunk
from scimflow.apply._rows import PlanRow, RowResult
from scimflow.config import ScimConfig
from scimflow.connectors.scim import ScimWriter, read_scim_state
from scimflow.state import StateStore
from tests.scim.test_scim_client import APP_URL, ENTRA_POLICY, FAST, TOKEN, scim_app, scim_config

PLAN = "p" * 64


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bearer token the in-process configs refer to."""
    monkeypatch.setenv("H6_SCIM_TOKEN", TOKEN)


def row(action: str, key: str, pid: str | None = None, entra_id: str | None = None, **changes: Any) -> PlanRow:
    """A plan row; each change is given as ``(from, to)``."""
    return PlanRow(
        action=action,
        key=key,
        entra_id=entra_id,
        associate_id=pid,
        changes={f: {"from": a, "to": b} for f, (a, b) in changes.items()},
    )


def new_user(key: str, oid: str, **values: Any) -> PlanRow:
    """A create row for ``key`` with these ``to`` values."""
    changes: dict[str, Any] = {k: (None, v) for k, v in values.items()}
    return row("create", key, entra_id=oid, user_name=(None, key), **changes)


def apply(store: StateStore, writer: ScimWriter, rows: list[PlanRow]) -> dict[str, RowResult]:
    """One chunk through the real apply engine; results by key."""
    return {r.key: r for r in apply_chunk(store, PLAN, rows, writer)}


def state(writer: ScimWriter) -> dict[str, dict[str, Any]]:
    """The SCIM users by userName, as planning reads them."""
    users, _ = read_scim_state(writer.client)
    return {u["user_name"]: u for u in users.to_dicts()}


def raw_client(app: WSGIApplication) -> httpx.Client:
    """A plain client on the in-process server (for out-of-band changes)."""
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP_URL + "/")


def run_lifecycle(writer: ScimWriter, store: StateStore, outside: httpx.Client) -> None:
    """Initial push, a night of updates, a leaver, a return: every row applied and verified, state checked."""
    outside.post("Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "manual@x"})
    first = apply(
        store,
        writer,
        [
            new_user(
                "ada@x",
                "oid-a",
                first_name="Ada",
                last_name="L",
                email="ada@x",
                role="Sales",
                user_plan="Sales Premium",
                secondary_groups=["Oslo", "Nordic"],
                confidential=True,
            ),
            new_user("bob@x", "oid-b", first_name="Bob", role="Sales", user_plan="Sales Premium"),
            new_user("cy@x", "oid-c", title="CFO", role="Manager"),
        ],
    )
    assert {k: r.outcome for k, r in first.items()} == dict.fromkeys(("ada@x", "bob@x", "cy@x"), "applied")
    assert all(r.verified for r in first.values()), first  # the read-back found every planned value
    now = state(writer)
    ada, bob, cy = now["ada@x"], now["bob@x"], now["cy@x"]
    assert (ada["role"], ada["user_plan"], sorted(ada["secondary_groups"]), ada["confidential"]) == (
        "Sales", "Sales Premium", ["Nordic", "Oslo"], True,
    )  # fmt: skip
    assert ada["entra_id"] == "oid-a" and ada["email"] == "ada@x" and ada["active"] is True
    assert now["manual@x"]["groups"] == []

    night = apply(
        store,
        writer,
        [
            row(
                "update",
                "ada@x",
                ada["partner_id"],
                role=("Sales", "Manager"),
                title=(None, "Head"),
                secondary_groups=(["Nordic", "Oslo"], ["Oslo"]),
            ),
            row("retire", "bob@x", bob["partner_id"], active=(True, False)),
            row("update", "cy@x", cy["partner_id"], user_name=("cy@x", "cyrus@x"), title=("CFO", None)),
        ],
    )
    assert {k: r.outcome for k, r in night.items()} == dict.fromkeys(("ada@x", "bob@x", "cy@x"), "applied")
    assert all(r.verified for r in night.values()), night
    now = state(writer)
    assert (now["ada@x"]["role"], now["ada@x"]["title"], now["ada@x"]["secondary_groups"]) == (
        "Manager",
        "Head",
        ["Oslo"],
    )
    assert now["bob@x"]["active"] is False and now["bob@x"]["user_plan"] == "Sales Premium"  # memberships kept
    assert "cy@x" not in now and now["cyrus@x"]["title"] is None and now["cyrus@x"]["role"] == "Manager"
    assert now["manual@x"]["groups"] == [] and now["manual@x"]["active"] is True  # unmanaged: untouched

    back = apply(store, writer, [row("reactivate", "bob@x", bob["partner_id"], active=(False, True))])
    assert back["bob@x"].outcome == "applied"
    now = state(writer)
    assert now["bob@x"]["active"] is True and now["bob@x"]["role"] == "Sales"
    users, groups = read_scim_state(writer.client)
    by_name = {g["display_name"]: sorted(g["members"]) for g in groups.to_dicts()}
    ids = {u["user_name"]: u["partner_id"] for u in users.to_dicts()}
    assert by_name == {
        "scimflow:role:Sales": sorted([ids["bob@x"]]),
        "scimflow:role:Manager": sorted([ids["ada@x"], ids["cyrus@x"]]),
        "scimflow:user_plan:Sales Premium": sorted([ids["ada@x"], ids["bob@x"]]),
        "scimflow:secondary_groups:Oslo": [ids["ada@x"]],
        "scimflow:secondary_groups:Nordic": [],
        "scimflow:confidential:true": [ids["ada@x"]],
    }


@pytest.mark.parametrize(("dialect", "policy"), [("rfc", None), ("entra", ENTRA_POLICY)])
def test_writer_lifecycle_in_process(tmp_path: Path, dialect: str, policy: Any) -> None:
    """rfc on the strict server, entra on the Entra-tolerant one: push, night, leaver, return, unmanaged untouched."""
    app = scim_app(policy)
    writer = ScimWriter(scim_config(dialect, APP_URL, write_concurrency=1), transport=httpx.WSGITransport(app=app),
                        policy=FAST)  # fmt: skip
    assert isinstance(writer, Writer)
    with writer, StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        run_lifecycle(writer, store, raw_client(app))


@pytest.mark.parametrize(("dialect", "policy"), [("rfc", None), ("entra", ENTRA_POLICY)])
def test_writer_create_finds_what_an_earlier_attempt_made(tmp_path: Path, dialect: str, policy: Any) -> None:
    """A create whose user already exists (entra: found by the filter GET; rfc: the POST's 409) ends with that
    user brought up to date, not a duplicate."""
    app = scim_app(policy)
    raw_client(app).post("Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                        "userName": "ADA@x", "title": "Old"})  # fmt: skip
    writer = ScimWriter(scim_config(dialect, APP_URL), transport=httpx.WSGITransport(app=app), policy=FAST)
    with writer, StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        result = apply(store, writer, [new_user("ada@x", "oid-a", title="New", role="Sales")])
        assert result["ada@x"].outcome == "applied"
        now = state(writer)
    assert list(now) == ["ada@x"] and now["ada@x"]["title"] == "New" and now["ada@x"]["role"] == "Sales"
    assert result["ada@x"].associate_id == now["ada@x"]["partner_id"]


@pytest.mark.parametrize("dialect", ["rfc", "entra"])
def test_writer_404_on_a_cached_id_rematches_by_filter(dialect: str) -> None:
    """The cached id is gone (the gateway's DB was wiped and the user pushed again): the write re-matches by
    userName and lands on the user found, whose id it returns."""
    app = scim_app(ENTRA_POLICY if dialect == "entra" else None)
    outside = raw_client(app)
    writer = ScimWriter(scim_config(dialect, APP_URL), transport=httpx.WSGITransport(app=app), policy=FAST)
    with writer:
        made = writer.client.create_user({"user_name": "ada@x", "entra_id": "oid-a", "title": "Old"})
        current = writer.read_users([made.id])[made.id]
        assert outside.delete(f"Users/{made.id}").status_code == 204
        again = outside.post("Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                            "userName": "ada@x", "title": "Old"}).json()  # fmt: skip
        chunk = writer.prepare([], retried=frozenset())
        new_id = writer.write(row("update", "ada@x", made.id, "oid-a", title=("Old", "New")), current, chunk)
        assert new_id == again["id"] != made.id
        assert outside.get(f"Users/{new_id}").json()["title"] == "New"


def test_writer_membership_failure_fails_the_rows_behind_it(tmp_path: Path) -> None:
    """A group PATCH refused (400) fails the rows whose memberships it carried; their user writes stand."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and "/Groups/" in request.url.path:
            return httpx.Response(400, json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                             "status": "400", "scimType": "invalidValue", "detail": "no"})  # fmt: skip
        return inner.handle_request(request)

    app = scim_app()
    inner = httpx.WSGITransport(app=app)
    writer = ScimWriter(scim_config("rfc", APP_URL), transport=httpx.MockTransport(handler), policy=FAST)
    with writer, StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        result = apply(store, writer, [new_user("ada@x", "oid-a", role="Sales"), new_user("bob@x", "oid-b")])
        assert result["ada@x"].outcome == "failed" and "scimflow:role:Sales" in (result["ada@x"].detail or "")
        assert result["bob@x"].outcome == "applied"
        assert set(state(writer)) == {"ada@x", "bob@x"}


def test_writer_over_https_against_the_scim_emulator(
    scim_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real sockets (TLS verified, bearer token), against the project's emulator in each policy."""
    dialect = scim_server.emulator.settings.dialect
    monkeypatch.setenv("H6_EMU_TOKEN", scim_server.token)
    config = ScimConfig.model_validate(
        {"base_url": scim_server.base_url, "token": "env:H6_EMU_TOKEN", "dialect": dialect, "write_concurrency": 4}
    )
    writer = ScimWriter(config, ca_bundle=scim_server.ca_bundle, policy=FAST)
    with writer, StateStore(f"sqlite:///{tmp_path}/state.db") as store, scim_server.client() as outside:
        run_lifecycle(writer, store, outside)


def test_writer_where_listing_is_refused(tmp_path: Path) -> None:
    """A server refusing unfiltered lists: the writer reads the computed groups by displayName (those the rules
    can give), moves a user from one role group to another, and a new run sees the memberships."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "startIndex" in request.url.params and "filter" not in request.url.params:
            return httpx.Response(403)
        return inner.handle_request(request)

    app = scim_app()
    inner = httpx.WSGITransport(app=app)
    names = ["scimflow:role:Sales", "scimflow:role:Manager"]

    def writer() -> ScimWriter:
        config = scim_config("rfc", APP_URL)
        return ScimWriter(config, transport=httpx.MockTransport(handler), policy=FAST, group_names=names)

    outside = raw_client(app)
    with StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        with writer() as w:
            first = apply(
                store, w, [new_user("ada@x", "oid-a", role="Sales"), new_user("bob@x", "oid-b", role="Sales")]
            )
        assert {r.outcome for r in first.values()} == {"applied"} and all(r.verified for r in first.values())
        ada = first["ada@x"].associate_id
        assert ada is not None
        with writer() as w:
            night = apply(store, w, [row("update", "ada@x", ada, role=("Sales", "Manager"))])
            assert night["ada@x"].outcome == "applied" and night["ada@x"].verified
    groups = {
        g["displayName"]: {m["value"] for m in g.get("members", [])} for g in outside.get("Groups").json()["Resources"]
    }
    assert groups == {"scimflow:role:Sales": {first["bob@x"].associate_id}, "scimflow:role:Manager": {ada}}


def emulator_writer(
    server: Any, monkeypatch: pytest.MonkeyPatch, token: str | None = None, group_names: tuple[str, ...] = ()
) -> ScimWriter:
    """A ScimWriter on a running SCIM emulator over HTTPS (TLS verified against its CA)."""
    monkeypatch.setenv("H6_EMU_TOKEN", token or server.token)
    config = ScimConfig.model_validate(
        {"base_url": server.base_url, "token": "env:H6_EMU_TOKEN", "dialect": "rfc", "write_concurrency": 4}
    )
    return ScimWriter(config, ca_bundle=server.ca_bundle, policy=FAST, group_names=group_names)


def test_faults_over_https_429_storm_503_burst_and_refused_listing(
    scim_rfc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real sockets: a storm of 429s and a burst of 503s (Retry-After) and a server refusing lists; every
    row is applied once: no duplicate userName, every membership there."""
    scim_rfc.settings(throttle_next=4, error_next=3, retry_after="0.01", list_users=False)
    users = [new_user(f"u{i}@x", f"oid-{i}", role="Sales") for i in range(8)]
    with emulator_writer(scim_rfc, monkeypatch, group_names=("scimflow:role:Sales",)) as writer:
        with StateStore(f"sqlite:///{tmp_path}/state.db") as store:
            result = apply(store, writer, users)
    assert {r.outcome for r in result.values()} == {"applied"}
    snap = scim_rfc.snapshot()
    assert sorted(u["userName"] for u in snap["users"]) == sorted(f"u{i}@x" for i in range(8))
    (group,) = snap["groups"]
    assert group["displayName"] == "scimflow:role:Sales"
    assert {m["value"] for m in group["members"]} == {r.associate_id for r in result.values()}
    stats = scim_rfc.stats()
    assert stats["throttled"] >= 4 and stats["errors"] >= 3, stats
    with emulator_writer(scim_rfc, monkeypatch) as reader:
        frame, _ = read_scim_state(reader.client, users=[(f"U{i}@x", None) for i in range(8)])
    assert scim_rfc.stats()["refused_listings"] >= 1
    assert frame.height == 8 and set(frame["role"].to_list()) == {"Sales"}


def test_token_refused_over_https_applies_nothing(
    scim_rfc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused token (401) ends the apply with an AuthError that says so; the server holds nothing."""
    from scimflow.connectors.errors import AuthError

    with emulator_writer(scim_rfc, monkeypatch, token="not-the-token") as writer:
        with StateStore(f"sqlite:///{tmp_path}/state.db") as store, pytest.raises(AuthError, match="token refused"):
            apply(store, writer, [new_user("ada@x", "oid-a", role="Sales")])
    assert scim_rfc.snapshot() == {"users": [], "groups": []}
