"""GraphSource against the Graph emulator over real HTTPS sockets (verification on, CA via ca_bundle)."""

from __future__ import annotations

import logging
import time

import polars as pl
import pytest
import stamina
from graph_helpers import SECRET, Running, entra_config, running, transitive_groups

from scimflow.config import CertificateCredential
from scimflow.connectors.errors import AuthError, UpstreamError
from scimflow.connectors.graph import DeltaLinks, GraphSource, clear_app_cache
from scimflow.emulators.graph import generate_tenant
from scimflow.emulators.pki import self_signed_certificate, write_private
from scimflow.frames import ENTRA_SCHEMA


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("id")


def _groups_of(frame: pl.DataFrame) -> dict[str, set[str]]:
    return {r["id"]: set(r["group_ids"]) for r in frame.select("id", "group_ids").to_dicts()}


def test_read_users_follows_next_links_over_many_pages(tenant25: Running) -> None:
    """With page_size 2 all 25 users arrive over 13 pages, with memberships, and no request per user."""
    tenant25.reset()
    with GraphSource(entra_config(tenant25, page_size=2), ca_bundle=tenant25.ca) as graph:
        frame = graph.read_users()
    assert frame.schema == ENTRA_SCHEMA
    assert frame.height == 25
    assert frame.get_column("id").n_unique() == 25
    snap = tenant25.emulator.snapshot()
    assert _groups_of(frame) == transitive_groups(snap)
    stats = tenant25.stats()
    user_pages = 13
    group_pages = 3  # 6 groups, 2 a page
    assert stats["graph_requests"] == graph.requests
    assert user_pages + group_pages < graph.requests < user_pages + group_pages + 25
    assert stats["token_requests"] <= 1


def test_select_brings_non_default_properties(tenant25: Running) -> None:
    """Properties Graph returns only with $select (accountEnabled, department, employeeId) are filled in."""
    with GraphSource(entra_config(tenant25), ca_bundle=tenant25.ca) as graph:
        frame = graph.read_users()
    by_id = {u["id"]: u for u in tenant25.emulator.snapshot()["users"]}
    for row in frame.iter_rows(named=True):
        src = by_id[row["id"]]
        assert row["accountEnabled"] == src["accountEnabled"]
        assert row["department"] == src["department"]
        assert row["employeeId"] == src["employeeId"]
        assert row["businessPhones"] == src["businessPhones"]


def test_nested_group_membership_is_transitive(example: Running) -> None:
    """A member of Sales Oslo (nested in SO Sales) is in both, by name and by id."""
    with GraphSource(entra_config(example), ca_bundle=example.ca) as graph:
        frame = graph.read_users()
    ola = frame.filter(pl.col("userPrincipalName") == "Ola.Hansen@contoso.com").row(0, named=True)
    assert set(ola["groups"]) == {"SO Sales", "Sales Oslo", "Employees"}
    assert "a0b00001-1111-4222-8333-444455550001" in ola["group_ids"]
    assert ola["groups"] == sorted(ola["groups"])


def test_group_scope_keeps_transitive_members_only(example: Running) -> None:
    """entra.groups by name (or id) keeps only transitive members of those groups, with all their groups."""
    with GraphSource(entra_config(example, groups=["so sales"]), ca_bundle=example.ca) as graph:
        by_name = graph.read_users()
    with GraphSource(
        entra_config(example, groups=["a0b00001-1111-4222-8333-444455550001"]), ca_bundle=example.ca
    ) as graph:
        by_id = graph.read_users()
    assert sorted(by_name.get_column("userPrincipalName").to_list()) == [
        "Ola.Hansen@contoso.com",
        "kari.nordmann@contoso.com",
    ]
    assert _sorted(by_name).equals(_sorted(by_id))
    assert "Employees" in by_name.filter(pl.col("userPrincipalName") == "Ola.Hansen@contoso.com")["groups"][0].to_list()


def test_msal_app_and_token_are_shared_across_sources(tls, graph_fixture) -> None:
    """Two sources (two Prefect tasks) with one configuration cost one token request in total."""
    with running(tls, graph_fixture) as run:
        cfg = entra_config(run)
        for _ in range(2):
            with GraphSource(cfg, ca_bundle=run.ca) as graph:
                graph.read_users()
        assert run.stats()["token_requests"] == 1


def test_delta_rounds_apply_every_kind_of_change(tls) -> None:
    """Add, change, disable, delete and membership changes between reads land exactly as a full read sees them."""
    data = generate_tenant(12, 6, seed=3)
    with running(tls, data, delta_page_size=3, delta_members_per_slice=2) as run:
        cfg = entra_config(run, page_size=5)
        with GraphSource(cfg, ca_bundle=run.ca) as graph:
            first = graph.read_delta(None, None)
            assert first.full_read and first.note is None and first.frame.height == 12
            users = data["users"]
            g = {grp["displayName"]: grp["id"] for grp in data["groups"]}
            new = run.admin("POST", "/_emulator/users", json={
                "userPrincipalName": "new.person@contoso.com", "displayName": "New Person", "accountEnabled": True,
                "department": "Sales",
            }).json()
            run.admin("POST", f"/_emulator/groups/{g['Group 005']}/members", json={"id": new["id"]})
            run.admin("PATCH", f"/_emulator/users/{users[0]['id']}", json={"jobTitle": "Chief", "mobilePhone": None})
            run.admin("PATCH", f"/_emulator/users/{users[1]['id']}", json={"accountEnabled": False})
            run.admin("DELETE", f"/_emulator/users/{users[2]['id']}")
            run.admin("DELETE", f"/_emulator/users/{users[3]['id']}", params={"permanent": "true"})
            victim = next(m for m in data["groups"][1]["members"] if m not in {u["id"] for u in users[:4]})
            run.admin("DELETE", f"/_emulator/groups/{g['Group 001']}/members/{victim}")
            run.admin("PATCH", f"/_emulator/groups/{g['Group 002']}", json={"displayName": "Renamed 002"})

            second = graph.read_delta(first.frame, first.links)
            assert not second.full_read
            assert sorted(second.removed) == sorted([users[2]["id"], users[3]["id"]])
            assert second.requests < 20
            full = graph.read_users()
            assert _sorted(second.frame).equals(_sorted(full))
            row = second.frame.filter(pl.col("id") == users[0]["id"]).row(0, named=True)
            assert row["jobTitle"] == "Chief" and row["mobilePhone"] is None
            assert second.frame.filter(pl.col("id") == users[1]["id"])["accountEnabled"][0] is False
            newrow = second.frame.filter(pl.col("id") == new["id"]).row(0, named=True)
            assert {"Group 004", "Group 005"} <= set(newrow["groups"])  # 005 is nested in 004

            third = graph.read_delta(second.frame, second.links)
            assert third.removed == [] and _sorted(third.frame).equals(_sorted(second.frame))
            assert third.requests == 2


def test_delta_with_group_scope_admits_and_drops_users(tls, graph_fixture) -> None:
    """Under an entra.groups scope, joining a scoped group brings a user in and leaving drops them."""
    with running(tls, graph_fixture) as run:
        cfg = entra_config(run, groups=["SO Sales"])
        with GraphSource(cfg, ca_bundle=run.ca) as graph:
            first = graph.read_delta(None, None)
            assert first.frame.height == 2
            sara = "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"
            run.admin("POST", "/_emulator/groups/a0b00003-1111-4222-8333-444455550003/members", json={"id": sara})
            run.admin("DELETE", "/_emulator/groups/a0b00001-1111-4222-8333-444455550001/members/6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001")
            second = graph.read_delta(first.frame, first.links)
            assert _sorted(second.frame).equals(_sorted(graph.read_users()))
            assert sara in second.frame["id"].to_list()
            assert "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001" not in second.frame["id"].to_list()


@pytest.mark.parametrize("status", [410, 400], ids=["gone", "sync-state-not-found"])
def test_expired_delta_link_falls_back_to_a_full_read(tls, graph_fixture, status: int) -> None:
    """An expired delta link (410 Gone or 400 syncStateNotFound) turns into a full read with a note."""
    with running(tls, graph_fixture, delta_expired_status=status) as run:
        with GraphSource(entra_config(run), ca_bundle=run.ca) as graph:
            first = graph.read_delta(None, None)
            run.knobs(expire_delta_tokens=True)
            again = graph.read_delta(first.frame, first.links)
            assert again.full_read
            assert again.note is not None and "expired" in again.note
            assert _sorted(again.frame).equals(_sorted(first.frame))
            run.knobs(expire_delta_tokens=False)
            assert not graph.read_delta(again.frame, again.links).full_read


def test_throttle_storm_honours_retry_after(tls, graph_fixture) -> None:
    """A storm of four 429s with Retry-After 0.1 completes, having waited at least 0.4 s."""
    with running(tls, graph_fixture) as run:
        with GraphSource(entra_config(run), ca_bundle=run.ca) as graph:
            graph.auth.token()  # the token request is not part of the storm
            run.knobs(throttle_next=4, retry_after="0.1")
            stamina.set_testing(False)
            try:
                started = time.monotonic()
                frame = graph.read_users()
                elapsed = time.monotonic() - started
            finally:
                stamina.set_testing(True, attempts=8)
        assert frame.height == 4
        assert run.stats()["throttled"] == 4
        assert elapsed >= 0.4


def test_401_mid_run_reacquires_the_token_once(tls, graph_fixture) -> None:
    """Tokens revoked in the middle of a read cost exactly one new token request, and the read completes."""
    with running(tls, graph_fixture) as run:
        with GraphSource(entra_config(run, page_size=1), ca_bundle=run.ca) as graph:
            graph.read_users()
            run.reset()
            run.knobs(revoke_tokens_after=3)
            frame = graph.read_users()
        assert frame.height == 4
        stats = run.stats()
        assert stats["token_requests"] == 1
        assert stats["unauthorized"] == 1
        assert graph.auth.reauthentications == 1


def _cert_config(run: Running, tmp_path, key_pem: bytes, thumb: str):
    key = write_private(tmp_path / "entra-app.key", key_pem)
    cred = CertificateCredential(private_key=f"file:{key}", thumbprint=thumb)
    return entra_config(run, client_secret=None, certificate=cred)


def test_certificate_credential_is_accepted(tls, graph_fixture, tmp_path) -> None:
    """A client assertion signed with a registered certificate (x5t thumbprint) gets a token."""
    key_pem, cert_pem, thumb = self_signed_certificate("scimflow-test")
    with running(tls, graph_fixture, client_secret=None, certificate_thumbprints={thumb: cert_pem}) as run:
        with GraphSource(_cert_config(run, tmp_path, key_pem, thumb), ca_bundle=run.ca) as graph:
            assert graph.read_users().height == 4


def test_unregistered_certificate_is_refused(tls, graph_fixture, tmp_path) -> None:
    """An assertion signed with a certificate the app does not know raises AuthError."""
    _, cert_pem, thumb = self_signed_certificate("registered")
    other_key, _, other_thumb = self_signed_certificate("stranger")
    with running(tls, graph_fixture, client_secret=None, certificate_thumbprints={thumb: cert_pem}) as run:
        with GraphSource(_cert_config(run, tmp_path, other_key, other_thumb), ca_bundle=run.ca) as graph:
            with pytest.raises(AuthError, match="invalid_client"):
                graph.read_users()


def test_wrong_secret_is_refused_without_echoing_it(tls, graph_fixture, monkeypatch, caplog) -> None:
    """A wrong client secret raises AuthError whose text (and the logs) never contain the secret."""
    wrong = "not-the-secret-" + SECRET[-8:] + "x"
    monkeypatch.setenv("SCIMFLOW_TEST_WRONG_SECRET", wrong)
    caplog.set_level(logging.DEBUG)
    with running(tls, graph_fixture) as run:
        with GraphSource(entra_config(run, client_secret="env:SCIMFLOW_TEST_WRONG_SECRET"), ca_bundle=run.ca) as graph:
            with pytest.raises(AuthError) as info:
                graph.read_users()
    assert "7000215" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text


def test_no_secret_or_token_in_logs(tls, graph_fixture, caplog) -> None:
    """At DEBUG, a read with a 401 re-authentication logs neither the secret nor any token."""
    caplog.set_level(logging.DEBUG)
    with running(tls, graph_fixture) as run:
        with GraphSource(entra_config(run, page_size=1), ca_bundle=run.ca) as graph:
            first = graph.auth.token()
            run.knobs(revoke_tokens_after=2)
            graph.read_users()
            second = graph.auth.token()
    assert first != second
    assert SECRET not in caplog.text
    assert first not in caplog.text and second not in caplog.text
    assert "scimflow.graph" in caplog.text  # the connector did log (sanitised lines)


def test_tls_is_refused_without_the_ca(tls, graph_fixture) -> None:
    """Without ca_bundle the emulator's certificate is not trusted: UpstreamError, verification stays on."""
    clear_app_cache()
    with running(tls, graph_fixture) as run:
        with GraphSource(entra_config(run)) as graph:
            with pytest.raises(UpstreamError, match="TLS"):
                graph.read_users()


def test_delta_links_must_stay_on_the_graph_origin(example: Running) -> None:
    """A stored delta link pointing elsewhere is refused before any token is sent there."""
    with GraphSource(entra_config(example), ca_bundle=example.ca) as graph:
        first = graph.read_delta(None, None)
        bad = DeltaLinks(users="https://evil.example/v1.0/users/delta?$deltatoken=x", groups=first.links.groups)
        with pytest.raises(Exception, match="another origin"):
            graph.read_delta(first.frame, bad)
