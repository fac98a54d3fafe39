"""SuperOfficeTarget against the SuperOffice emulator over real HTTPS (verification on)."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import httpx
import polars as pl
import pytest

from scimflow.connectors.errors import AuthError, ConflictError, PayloadError
from scimflow.emulators.superoffice._generate import generate_tenant
from scimflow.frames import SO_SCHEMA, Reference

from .conftest import APP_TOKEN, CTX, SYSTEM_USER_TOKEN, SoEnv

NEW_USER: dict[str, Any] = {
    "user_name": "ola.nordmann@contoso.com",
    "first_name": "Ola",
    "last_name": "Nordmann",
    "email": "ola.nordmann@contoso.com",
    "title": "Account Manager",
    "mobile_phone": "+47 900 00 009",
    "role": "Sales",
    "primary_group": "Sales Norway",
    "secondary_groups": ["Support", "Fallback group"],
    "owner_company": "Contoso AS",
    "user_plan": "Sales Premium",
    "confidential": True,
}


def assigned(user: dict[str, Any]) -> list[str]:
    return [
        lic["Name"]
        for o in user["LicenseOwners"]
        for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses")
        for lic in o[kind]
        if lic["Assigned"]
    ]


def test_auth_flow_with_a_good_signature(so: SoEnv) -> None:
    """A correctly signed system-user token yields one ticket that serves every later call."""
    so.target.read_reference()
    so.target.read_users()
    assert so.target.auth.authentications == 1
    assert so.emulator.stats()["authenticates"] == 1
    assert so.emulator.stats()["unauthorized"] == 0


def test_a_foreign_keys_signature_is_refused(so: SoEnv) -> None:
    """A token signed with a key the app did not register is refused with an AuthError."""
    target = so.foreign_target()
    with pytest.raises(AuthError, match="Signature verification failed"):
        target.read_reference()
    target.close()
    assert so.emulator.stats()["auth_failures"] == 1


def test_an_expired_ticket_is_renewed_exactly_once(so_factory: Any) -> None:
    """After the sliding ticket lifetime passes, the next call gets 401 and re-authenticates once."""
    env: SoEnv = so_factory(ticket_lifetime=1)
    env.target.read_reference()
    time.sleep(1.3)
    frame = env.target.read_users()
    assert frame.height == 3
    stats = env.emulator.stats()
    assert stats["authenticates"] == 2
    assert stats["unauthorized"] == 1
    assert env.target.auth.authentications == 2


@pytest.mark.parametrize("next_links", [True, False], ids=["odata.nextLink", "$skip"])
def test_paging_over_three_or_more_pages(so_factory: Any, next_links: bool) -> None:
    """2,500 users arrive complete and in order over 3+ pages, following nextLink or $skip."""
    env: SoEnv = so_factory(generate_tenant(2500, seed=3), page_size_max=700, next_links=next_links)
    frame = env.target.read_users()
    assert frame.height == 2500
    assert frame["associate_id"].to_list() == list(range(100, 2600))
    assert frame["associate_id"].n_unique() == 2500
    # 4 pages of users (700 each) and 5 person chunks of 500; never one request per user
    assert env.emulator.stats()["requests"] < 30


def test_reading_the_fixture_gives_the_expected_frame(so: SoEnv, superoffice_fixture: dict[str, Any]) -> None:
    """The worked example's tenant reads as the expected SO frame and reference lists."""
    ref = so.target.read_reference()
    expected_ref = Reference.from_fixture(superoffice_fixture)
    for name in ("roles", "groups", "plans", "companies"):
        assert getattr(ref, name).equals(getattr(expected_ref, name)), name
    frame = so.target.read_users()
    assert frame.schema == SO_SCHEMA
    rows = {r["user_name"]: r for r in frame.to_dicts()}
    assert rows["kari.nordmann@contoso.com"] == {
        "associate_id": 11,
        "name": "KN",
        "user_name": "kari.nordmann@contoso.com",
        "user_type": "InternalAssociate",
        "retired": False,
        "person_id": 101,
        "first_name": "Kari",
        "last_name": "Nordmann",
        "email": "kari.nordmann@contoso.com",
        "title": "Sales Rep",
        "mobile_phone": "+47 900 00 001",
        "role": "Sales",
        "primary_group": "Fallback group",
        "secondary_groups": [],
        "owner_company": "Contoso AS",
        "contact_id": 2,
        "user_plan": "Sales Premium",
        "confidential": False,
    }
    sara = rows["sara.lind@contoso.com"]
    assert (sara["role"], sara["primary_group"], sara["owner_company"], sara["user_plan"], sara["mobile_phone"]) == (
        "Support",
        "Support",
        "Contoso AB",
        "Service Premium",
        None,
    )
    sys_user = rows["integration@contoso.com"]
    assert sys_user["user_type"] == "SystemAssociate"
    assert sys_user["person_id"] is None
    assert sys_user["user_plan"] is None
    by_id = so.target.read_users_by_id([12, 11, 999])
    assert by_id["associate_id"].to_list() == [11, 12]
    assert by_id.equals(frame.filter(pl.col("associate_id").is_in([11, 12])))
    assert so.target.find_by_user_name("  KARI.Nordmann@contoso.com ")["associate_id"].to_list() == [11]


def test_create_user_lands_in_the_snapshot(so: SoEnv) -> None:
    """A create makes a person under the owner company and an internal user with every element set."""
    ref = so.target.read_reference()
    aid = so.target.create_user(NEW_USER, ref)
    user = so.user("ola.nordmann@contoso.com")
    assert user is not None
    assert user["AssociateId"] == aid
    assert user["Type"] == "InternalAssociate"
    assert user["Name"] == "ON"
    assert user["Role"] == {"Id": 2, "Value": "Sales"}
    assert user["UserGroup"] == {"Id": 2, "Value": "Sales Norway"}
    assert sorted(g["Value"] for g in user["OtherGroups"]) == ["Fallback group", "Support"]
    assert assigned(user) == ["ten-sales", "visible-for"]
    assert user["Person"] == {
        "PersonId": user["Person"]["PersonId"],
        "Firstname": "Ola",
        "Lastname": "Nordmann",
        "Email": "ola.nordmann@contoso.com",
        "Title": "Account Manager",
        "MobilePhone": "+47 900 00 009",
        "ContactId": 2,
    }
    row = so.target.read_users_by_id([aid]).to_dicts()[0]
    assert row["user_plan"] == "Sales Premium"
    assert row["confidential"] is True
    assert row["secondary_groups"] == ["Fallback group", "Support"]
    # a second Nordmann with the same initials gets a numbered, unique Name
    second = so.target.create_user(
        {**NEW_USER, "user_name": "olga.n@contoso.com", "first_name": "Olga", "email": "olga.n@contoso.com"}, ref
    )
    assert so.user("olga.n@contoso.com")["Name"] == "ON2"  # type: ignore[index]
    assert second != aid


def test_update_person_and_user_fields(so: SoEnv) -> None:
    """Mapped person fields and user fields change through JSON Patch, each guarded by a test op."""
    ref = so.target.read_reference()
    so.target.update_user(
        11,
        {
            "user_name": {"from": "kari.nordmann@contoso.com", "to": "kari.n@contoso.com"},
            "first_name": {"from": "Kari", "to": "Karianne"},
            "title": {"from": "Sales Rep", "to": None},
            "email": {"from": "kari.nordmann@contoso.com", "to": "kari.n@contoso.com"},
            "mobile_phone": {"from": "+47 900 00 001", "to": "+47 911 11 111"},
            "role": {"from": "Sales", "to": "Manager"},
            "primary_group": {"from": "Fallback group", "to": "Sales Norway"},
            "secondary_groups": {"from": [], "to": ["Support"]},
        },
        ref,
    )
    so.target.update_user(12, {"mobile_phone": {"from": None, "to": "+46 70 000 00 00"}}, ref)
    user = so.user("kari.n@contoso.com")
    assert user is not None
    assert user["Role"] == {"Id": 4, "Value": "Manager"}
    assert user["UserGroup"] == {"Id": 2, "Value": "Sales Norway"}
    assert user["OtherGroups"] == [{"Id": 3, "Value": "Support"}]
    assert user["Person"]["Firstname"] == "Karianne"
    assert user["Person"]["Title"] is None
    assert user["Person"]["Email"] == "kari.n@contoso.com"
    assert user["Person"]["MobilePhone"] == "+47 911 11 111"
    assert so.user("sara.lind@contoso.com")["Person"]["MobilePhone"] == "+46 70 000 00 00"  # type: ignore[index]
    assert so.emulator.stats()["writes"] == 3


def test_an_empty_title_is_written_without_a_read_once_its_form_is_known(
    so_factory: Any, superoffice_fixture: dict[str, Any]
) -> None:
    """A blank ``from`` title: the first update reads the user (is empty null or ""?), later ones only PATCH.

    The ``test`` op still guards the write: a title set by someone else since the bulk read is a conflict.
    """
    data = copy.deepcopy(superoffice_fixture)
    for user in data["users"]:
        if user["AssociateId"] in (11, 12):
            user["Person"]["Title"] = None
    so: SoEnv = so_factory(data)
    ref = so.target.read_reference()
    current = {r["associate_id"]: r for r in so.target.read_users_by_id([11, 12]).to_dicts()}
    assert current[11]["title"] is None

    def requests() -> int:
        return int(so.emulator.stats()["requests"])

    before = requests()
    so.target.update_user(11, {"title": {"from": None, "to": "Sales Rep"}}, ref, current=current[11])
    assert requests() - before == 2  # GET (learns that an empty Title is null) + PATCH

    other = so.make_target()
    other.update_user(12, {"title": {"from": None, "to": "Set elsewhere"}}, ref)
    with pytest.raises(ConflictError, match="drift: title"):  # the stale bulk read said empty
        so.target.update_user(12, {"title": {"from": None, "to": "Support"}}, ref, current=current[12])
    assert so.user("sara.lind@contoso.com")["Person"]["Title"] == "Set elsewhere"  # type: ignore[index]

    other.update_user(12, {"title": {"from": "Set elsewhere", "to": None}}, ref)
    other.close()
    fresh = so.target.read_users_by_id([12]).to_dicts()[0]
    before = requests()
    so.target.update_user(12, {"title": {"from": None, "to": "Support"}}, ref, current=fresh)
    assert requests() - before == 1  # the PATCH alone, its test op built from the bulk read
    assert so.user("sara.lind@contoso.com")["Person"]["Title"] == "Support"  # type: ignore[index]
    assert so.user("kari.nordmann@contoso.com")["Person"]["Title"] == "Sales Rep"  # type: ignore[index]


def test_role_and_group_from_a_bulk_read_are_one_patch_guarded_by_their_ids(so: SoEnv) -> None:
    """Role and primary group changes with the bulk read's values: one PATCH, its test ops on the ids."""
    ref = so.target.read_reference()
    current = {r["associate_id"]: r for r in so.target.read_users_by_id([11, 12]).to_dicts()}
    before = int(so.emulator.stats()["requests"])
    so.target.update_user(
        11,
        {"role": {"from": "Sales", "to": "Manager"}, "primary_group": {"from": "Fallback group", "to": "Support"}},
        ref,
        current=current[11],
    )
    assert int(so.emulator.stats()["requests"]) - before == 1
    user = so.user("kari.nordmann@contoso.com")
    assert user is not None
    assert (user["Role"], user["UserGroup"]) == ({"Id": 4, "Value": "Manager"}, {"Id": 3, "Value": "Support"})

    role = current[12]["role"]
    with so.make_target() as other:  # a change landing after the bulk read
        other.update_user(12, {"role": {"from": role, "to": "Manager"}}, ref)
    with pytest.raises(ConflictError, match="drift: role"):
        so.target.update_user(12, {"role": {"from": role, "to": "Sales"}}, ref, current=current[12])
    assert so.user("sara.lind@contoso.com")["Role"]["Value"] == "Manager"  # type: ignore[index]


def test_plan_confidential_and_owner_company_changes(so: SoEnv) -> None:
    """A plan change swaps plan licences, confidential toggles visible-for, owner company moves the person."""
    ref = so.target.read_reference()
    so.target.update_user(
        11,
        {
            "user_plan": {"from": "Sales Premium", "to": "Marketing Premium"},
            "confidential": {"from": False, "to": True},
            "owner_company": {"from": "Contoso AS", "to": "Contoso AB"},
        },
        ref,
    )
    user = so.user("kari.nordmann@contoso.com")
    assert user is not None
    assert assigned(user) == ["ten-marketing", "visible-for"]
    assert user["Person"]["ContactId"] == 3
    row = so.target.read_users_by_id([11]).to_dicts()[0]
    assert (row["user_plan"], row["confidential"], row["owner_company"]) == ("Marketing Premium", True, "Contoso AB")


def test_remove_plan_assigns_not_selected(so: SoEnv) -> None:
    """Removing the plan assigns superlicense-no-selection, unassigns the others and keeps the login."""
    ref = so.target.read_reference()
    so.target.update_user(12, {"user_plan": {"from": "Service Premium", "to": None}}, ref)
    user = so.user("sara.lind@contoso.com")
    assert user is not None
    assert assigned(user) == ["superlicense-no-selection"]
    assert user["Deleted"] is False
    row = so.target.read_users_by_id([12]).to_dicts()[0]
    assert (row["user_plan"], row["retired"]) == (None, False)


def test_retire_and_reactivate(so: SoEnv) -> None:
    """Retire removes licences and marks user and person retired; reactivate plus the plan's update restores."""
    ref = so.target.read_reference()
    so.target.retire(11)
    user = so.user("kari.nordmann@contoso.com")
    assert user is not None
    assert user["Deleted"] is True
    assert assigned(user) == []
    assert user["Person"]["Retired"] is True
    row = so.target.read_users_by_id([11]).to_dicts()[0]
    assert (row["retired"], row["user_plan"]) == (True, None)
    so.target.update_user(
        11, {"active": {"from": False, "to": True}, "user_plan": {"from": None, "to": "Sales Premium"}}, ref
    )
    user = so.user("kari.nordmann@contoso.com")
    assert user is not None
    assert user["Deleted"] is False
    assert user["Person"].get("Retired", False) is False
    assert assigned(user) == ["ten-sales"]
    so.target.reactivate(11)  # idempotent
    assert so.user("kari.nordmann@contoso.com")["Deleted"] is False  # type: ignore[index]


def test_drift_before_the_write_is_a_conflict(so: SoEnv) -> None:
    """A user changed since the plan was made is not overwritten: ConflictError, nothing written."""
    ref = so.target.read_reference()
    so.target.update_user(11, {"role": {"from": "Sales", "to": "Support"}}, ref)
    writes = so.emulator.stats()["writes"]
    with pytest.raises(ConflictError, match="drift: role"):
        so.target.update_user(11, {"role": {"from": "Sales", "to": "Manager"}}, ref)
    assert so.emulator.stats()["writes"] == writes
    assert so.user("kari.nordmann@contoso.com")["Role"]["Value"] == "Support"  # type: ignore[index]


def _first_user_page(request: httpx.Request) -> bool:
    return request.method == "GET" and request.url.path.endswith("/api/v1/User") and "$skip" not in str(request.url)


def test_a_next_link_to_another_origin_is_not_followed(so: SoEnv) -> None:
    """An archive page whose odata.nextLink points elsewhere is a PayloadError: the ticket never leaves the API."""

    def foreign_link(request: httpx.Request, body: Any) -> Any:
        if _first_user_page(request) and isinstance(body, dict) and "value" in body:
            return {**body, "odata.nextLink": "https://elsewhere.example/api/v1/User?$skip=1000"}
        return None

    target = so.hooked_target(rewrite=foreign_link)
    with pytest.raises(PayloadError, match="another origin"):
        target.read_users()
    target.close()


def test_a_user_row_without_an_associate_id_is_a_payload_error(so: SoEnv) -> None:
    """A user archive row without a usable associateDbId is refused, naming the row."""

    def drop_id(request: httpx.Request, body: Any) -> Any:
        if _first_user_page(request) and isinstance(body, dict) and len(body.get("value") or []) > 1:
            rows = [dict(r) for r in body["value"]]
            rows[1]["associateDbId"] = ""
            return {**body, "value": rows}
        return None

    target = so.hooked_target(rewrite=drop_id)
    with pytest.raises(PayloadError, match=r"user row 1 has no usable associateDbId \(''\)"):
        target.read_users()
    target.close()


def test_a_change_racing_the_write_fails_the_test_op(so: SoEnv) -> None:
    """A change landing between the read and the PATCH makes the JSON Patch test op answer 409: ConflictError."""
    ref = so.target.read_reference()
    other = so.make_target()
    raced: list[str] = []

    def race(request: httpx.Request) -> None:
        if request.method == "PATCH" and not raced:  # another writer gets in just before this PATCH arrives
            raced.append(request.url.path)
            other.update_user(11, {"role": {"from": "Sales", "to": "Manager"}}, ref)

    racing = so.hooked_target(race)
    with pytest.raises(ConflictError) as info:
        racing.update_user(11, {"role": {"from": "Sales", "to": "Support"}}, racing.read_reference())
    racing.close()
    other.close()
    assert info.value.status == 409
    assert raced == [f"/{CTX}/api/v1/User/11"]
    assert so.user("kari.nordmann@contoso.com")["Role"]["Value"] == "Manager"  # type: ignore[index]


class ProcessDied(BaseException):
    """The process ends mid-request (not an error any retry layer handles)."""


def test_a_create_repeated_after_a_crash_gives_one_user(so: SoEnv) -> None:
    """Crashes after the person or after the user was written leave exactly one person and one user."""
    ref = so.target.read_reference()

    def die_on_user_post(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.endswith("/api/v1/User"):
            raise ProcessDied  # the process dies between person and user

    crashing = so.hooked_target(die_on_user_post)
    with pytest.raises(ProcessDied):
        crashing.create_user(NEW_USER, crashing.read_reference())
    crashing.close()
    assert len(so.emulator.snapshot()["persons"]) == 1  # the person was written, the user was not
    first = so.target.create_user(NEW_USER, ref)  # the next run reuses the person left behind
    again = so.target.create_user(NEW_USER, ref)  # the user exists: resolved, not duplicated
    assert first == again
    snap = so.emulator.snapshot()
    matches = [u for u in snap["users"] if u["UserName"] == NEW_USER["user_name"]]
    assert len(matches) == 1
    assert "persons" not in snap  # no orphan person left behind
    assert sum(1 for u in snap["users"] if u["Person"] and u["Person"]["Lastname"] == "Nordmann") == 2


def test_a_create_colliding_with_a_system_user_fails_cleanly(so: SoEnv) -> None:
    """A UserName owned by a system user is refused with a PayloadError, and nothing is written."""
    ref = so.target.read_reference()
    with pytest.raises(PayloadError, match="SystemAssociate"):
        so.target.create_user({**NEW_USER, "user_name": "Integration@contoso.com"}, ref)
    assert so.emulator.stats()["writes"] == 0


def test_unknown_reference_names_are_payload_errors(so: SoEnv) -> None:
    """A display name missing from the tenant's lists is refused before anything is written."""
    ref = so.target.read_reference()
    with pytest.raises(PayloadError, match="unknown role"):
        so.target.create_user({**NEW_USER, "role": "Astronaut"}, ref)
    with pytest.raises(PayloadError, match="unknown user plan"):
        so.target.update_user(11, {"user_plan": {"from": "Sales Premium", "to": "Gold"}}, ref)
    assert so.emulator.stats()["writes"] == 0


def test_a_429_storm_completes_with_backoff(so_factory: Any) -> None:
    """With 40% of requests throttled (and some 503s), reads and writes still complete through the retry layer."""
    env: SoEnv = so_factory(generate_tenant(1200, seed=5), throttle_rate=0.4, error_rate=0.05, retry_after="0.01")
    ref = env.target.read_reference()
    frame = env.target.read_users()
    assert frame.height == 1200
    aid = env.target.create_user(NEW_USER, ref)
    assert env.target.read_users_by_id([aid]).height == 1
    assert env.emulator.stats()["throttled"] > 5


def test_user_carrier_field_names_are_the_documented_ones(so: SoEnv) -> None:
    """GET User/{id} answers with the carrier field names of reference §3, exactly spelled."""
    so.target.read_reference()
    api = so.web_api()
    carrier = api.get("api/v1/User/11").json()
    documented_user = {
        "AssociateId",
        "Name",
        "Rank",
        "Tooltip",
        "LicenseOwners",
        "Role",
        "UserGroup",
        "OtherGroups",
        "Person",
        "Deleted",
        "Lastlogin",
        "Lastlogout",
        "EjUserId",
        "RequestSignature",
        "Type",
        "IsPersonRetired",
        "IsOnTravel",
        "Credentials",
        "UserName",
        "TicketCategories",
        "NickName",
        "WaitingForApproval",
        "ExtraFields",
        "CustomFields",
        "PostSaveCommands",
        "TableRight",
        "FieldProperties",
        "_Links",
    }
    assert set(carrier) <= documented_user
    assert {
        "AssociateId",
        "Name",
        "UserName",
        "Type",
        "Deleted",
        "Role",
        "UserGroup",
        "OtherGroups",
        "LicenseOwners",
        "Person",
    } <= set(carrier)
    assert set(carrier["Role"]) <= {"Id", "Value", "Tooltip"}
    assert set(carrier["UserGroup"]) <= {"Value", "Tooltip", "Id", "Rank", "Deleted"}
    owner = carrier["LicenseOwners"][0]
    assert set(owner) == {"Name", "Description", "RestrictedModuleLicenses", "UnrestrictedModuleLicenses"}
    link_keys = {
        "Unrestricted",
        "Total",
        "Tooltip",
        "CanAssign",
        "Free",
        "InUse",
        "IsHidden",
        "Assigned",
        "ModuleLicenseId",
        "Name",
        "Description",
        "PrerequisiteModuleName",
        "SortOrder",
        "ExtraFlags",
    }
    for lic in owner["RestrictedModuleLicenses"]:
        assert set(lic) <= link_keys
    assert set(carrier["Person"]) <= {
        "PersonId",
        "Firstname",
        "Lastname",
        "MiddleName",
        "Email",
        "FullName",
        "Title",
        "Position",
        "ContactId",
        "ContactName",
        "Retired",
        "MobilePhone",
        "DirectPhone",
        "AssociateId",
        "AssociateName",
    }
    # and a written carrier keeps the names: PUT what was read, read it back unchanged
    assert api.put("api/v1/User/11", json=carrier).status_code == 200
    assert api.get("api/v1/User/11").json() == carrier


def test_secrets_never_appear_in_logs_or_errors(so: SoEnv, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the app token, the system-user token, the signature, the JWT nor the ticket is logged or raised."""
    caplog.set_level(logging.DEBUG)
    so.target.read_reference()
    so.target.update_user(11, {"title": {"from": "Sales Rep", "to": "Lead"}}, so.target.read_reference())
    so.emulator.expire_tickets()
    so.target.read_users()
    errors: list[str] = []
    bad = so.foreign_target()
    try:
        bad.read_users()
    except AuthError as exc:
        errors.append(str(exc))
        errors.append(repr(exc))
    bad.close()
    try:
        so.target.update_user(11, {"title": {"from": "Old", "to": "New"}}, so.target.read_reference())
    except ConflictError as exc:
        errors.append(str(exc))
    tickets = list(so.emulator._tickets)
    assert tickets
    text = caplog.text + "\n".join(errors)
    assert errors
    for secret in (APP_TOKEN, SYSTEM_USER_TOKEN, *tickets, "SOTicket ", "BEGIN PRIVATE KEY", "eyJ"):
        assert secret not in text
