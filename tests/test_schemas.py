"""The Pandera models and the row-level quarantine of scimflow.schemas."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest
from pandera.config import ValidationDepth, config_context

from scimflow.frames import ENTRA_SCHEMA, SO_SCHEMA, conform
from scimflow.schemas import (
    EntraUserModel,
    PlanRowModel,
    SchemaViolation,
    SuperOfficeUserModel,
    entra_blocked_by_so,
    validate_entra,
    validate_plan,
    validate_so,
)


def entra_user(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid Entra user; ``overrides`` replace attributes."""
    user = {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "userPrincipalName": f"user{n}@contoso.com",
        "mail": f"user{n}@contoso.com",
        "displayName": f"User {n}",
        "givenName": "User",
        "surname": str(n),
        "accountEnabled": True,
        "groups": ["Employees"],
        "group_ids": ["g-1"],
    }
    return {**user, **overrides}


def entra_frame(*users: dict[str, Any]) -> pl.DataFrame:
    return conform(pl.DataFrame(list(users), infer_schema_length=None), ENTRA_SCHEMA)


def so_user(n: int, **overrides: Any) -> dict[str, Any]:
    user = {
        "associate_id": n,
        "name": f"U{n}",
        "user_name": f"user{n}@contoso.com",
        "user_type": "InternalAssociate",
        "retired": False,
        "email": f"user{n}@contoso.com",
        "secondary_groups": [],
        "confidential": False,
    }
    return {**user, **overrides}


def so_frame(*users: dict[str, Any]) -> pl.DataFrame:
    return conform(pl.DataFrame(list(users), infer_schema_length=None), SO_SCHEMA)


def reasons(result: Any) -> dict[str, str]:
    return dict(result.quarantine.select("id", "reason").iter_rows())


def test_valid_users_pass_untouched() -> None:
    """A clean frame comes back whole, with an empty quarantine of the documented columns."""
    df = entra_frame(entra_user(1), entra_user(2))
    result = validate_entra(df)
    assert result.valid.equals(df)
    assert result.quarantine.columns == ["id", "key", "reason"]
    assert result.quarantine.is_empty()


@pytest.mark.parametrize(
    ("upn", "expected"),
    [
        (None, "userPrincipalName: missing"),
        ("not-an-address", "userPrincipalName: not a valid user principal name"),
        ("two@at@contoso.com", "userPrincipalName: not a valid user principal name"),
        ("kari@contoso.com trailing junk", "userPrincipalName: not a valid user principal name"),
        ("kari@nodot", "userPrincipalName: not a valid user principal name"),
    ],
    ids=["missing", "no-at", "two-ats", "trailing-junk", "no-domain-dot"],
)
def test_bad_upn_is_quarantined(upn: str | None, expected: str) -> None:
    """A missing or malformed UPN quarantines the user with a reason naming the field; others proceed."""
    result = validate_entra(entra_frame(entra_user(1, userPrincipalName=upn), entra_user(2)))
    assert reasons(result) == {entra_user(1)["id"]: expected}
    assert result.valid.get_column("id").to_list() == [entra_user(2)["id"]]


def test_surrounding_spaces_in_upn_are_tolerated() -> None:
    """A UPN with surrounding spaces is valid (keys are compared trimmed)."""
    assert validate_entra(entra_frame(entra_user(1, userPrincipalName="  Kari@Contoso.com "))).quarantine.is_empty()


@pytest.mark.parametrize(
    "variant",
    ["user1@contoso.com", "USER1@Contoso.COM", " user1@contoso.com", "User1@contoso.com  "],
    ids=["exact", "case", "leading-space", "trailing-spaces-and-case"],
)
def test_duplicate_upn_quarantines_every_holder(variant: str) -> None:
    """Every user sharing a UPN (trimmed, case-insensitively) is quarantined, with the count of the others."""
    result = validate_entra(entra_frame(entra_user(1), entra_user(2, userPrincipalName=variant), entra_user(3)))
    expected = "userPrincipalName: duplicate userPrincipalName shared with 1 other user"
    assert reasons(result) == {entra_user(1)["id"]: expected, entra_user(2)["id"]: expected}
    assert result.quarantine.get_column("key").to_list() == ["user1@contoso.com", "user1@contoso.com"]
    assert result.valid.get_column("id").to_list() == [entra_user(3)["id"]]


def test_duplicate_count_is_plural_beyond_two() -> None:
    """Three holders of one UPN each read "shared with 2 other users"."""
    result = validate_entra(entra_frame(*(entra_user(n, userPrincipalName="X@contoso.com") for n in range(3))))
    assert set(reasons(result).values()) == {"userPrincipalName: duplicate userPrincipalName shared with 2 other users"}


def test_duplicate_id_is_quarantined() -> None:
    """Two rows with one object id are both quarantined."""
    result = validate_entra(entra_frame(entra_user(1), entra_user(2, id=entra_user(1)["id"])))
    assert result.quarantine.height == 2
    assert set(result.quarantine.get_column("reason")) == {"id: duplicate id shared with 1 other user"}


def test_no_usable_name_is_quarantined() -> None:
    """A user with neither displayName nor givenName/surname (blank counts as empty) is quarantined."""
    nameless = entra_user(1, displayName="  ", givenName=None, surname="")
    given_only = entra_user(2, displayName=None, givenName="Ola", surname=None)
    result = validate_entra(entra_frame(nameless, given_only))
    assert reasons(result) == {
        nameless["id"]: "displayName: no usable name (displayName, givenName and surname are all empty)"
    }


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("displayName", 256),
        ("givenName", 64),
        ("surname", 64),
        ("jobTitle", 128),
        ("mobilePhone", 64),
        ("department", 64),
        ("companyName", 64),
        ("employeeId", 16),
        ("country", 128),
    ],
    ids=lambda v: str(v),
)
def test_overlong_field_is_quarantined(field: str, limit: int) -> None:
    """A value longer than Graph's documented maximum is quarantined; exactly the maximum passes."""
    at_limit, over = entra_user(1, **{field: "x" * limit}), entra_user(2, **{field: "x" * (limit + 1)})
    result = validate_entra(entra_frame(at_limit, over))
    assert reasons(result) == {over["id"]: f"{field}: longer than {limit} characters"}


@pytest.mark.parametrize(
    "bad", ["Kari\x00Nordmann", "Kari\x1bNordmann", "Kari\nNordmann"], ids=["nul", "esc", "newline"]
)
def test_control_characters_are_quarantined(bad: str) -> None:
    """A NUL byte or another control character in a string attribute quarantines the user."""
    result = validate_entra(entra_frame(entra_user(1, displayName=bad)))
    assert reasons(result) == {entra_user(1)["id"]: "displayName: contains a NUL byte or another control character"}


def test_every_reason_is_joined_in_one_sentence() -> None:
    """All failures of one row are reported together, in column order."""
    bad = entra_user(1, userPrincipalName=None, displayName="x" * 300, jobTitle="a\x00b")
    result = validate_entra(entra_frame(bad))
    assert reasons(result)[bad["id"]] == (
        "userPrincipalName: missing; displayName: longer than 256 characters; "
        "jobTitle: contains a NUL byte or another control character"
    )
    assert result.quarantine.get_column("key").to_list() == [bad["id"]]  # no UPN: the key is the id


def test_null_account_enabled_is_quarantined() -> None:
    """An unknown accountEnabled is quarantined: neither create nor retire would be safe."""
    result = validate_entra(entra_frame(entra_user(1, accountEnabled=None)))
    assert reasons(result) == {entra_user(1)["id"]: "accountEnabled: missing"}


def test_missing_column_raises_schema_violation() -> None:
    """A missing column stops the run with a message naming the column and the expected type."""
    with pytest.raises(SchemaViolation, match=r"column 'mail' is missing \(expected String\)"):
        validate_entra(entra_frame(entra_user(1)).drop("mail"))


def test_wrong_dtype_raises_schema_violation() -> None:
    """A column of the wrong dtype (e.g. an all-null page inferred as Null) names the column and both types."""
    df = entra_frame(entra_user(1)).with_columns(
        pl.lit(None).alias("department"), pl.lit("yes").alias("accountEnabled")
    )
    with pytest.raises(SchemaViolation) as info:
        validate_entra(df)
    assert "column 'department' has type Null, expected String" in str(info.value)
    assert "column 'accountEnabled' has type String, expected Boolean" in str(info.value)
    assert len(info.value.problems) == 2


def test_what_passes_also_passes_pandera() -> None:
    """Rows kept by validate_entra pass Pandera's own full validation of the model (the checks agree)."""
    users = [entra_user(n) for n in range(5)] + [
        entra_user(10, userPrincipalName="bad"),
        entra_user(11, displayName="a\x00"),
        entra_user(12, userPrincipalName="USER1@contoso.com"),
        entra_user(13, displayName=None, givenName=None, surname=None),
        entra_user(14, country="x" * 129),
    ]
    result = validate_entra(entra_frame(*users))
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        EntraUserModel.validate(result.valid, lazy=True)
    assert result.valid.height == 4
    assert result.quarantine.height == 6


def test_validation_finds_every_bad_row_among_100k() -> None:
    """100k users with 1% bad rows: exactly those are quarantined (the time is make bench's validate column)."""
    n = 100_000
    df = conform(
        pl.DataFrame(
            {
                "id": [f"id-{i}" for i in range(n)],
                "userPrincipalName": ["bad" if i % 100 == 0 else f"user{i}@contoso.com" for i in range(n)],
                "displayName": [f"User {i}" for i in range(n)],
                "jobTitle": ["Sales Manager"] * n,
                "accountEnabled": [True] * n,
                "groups": [["Employees", "SO Sales"]] * n,
            }
        ),
        ENTRA_SCHEMA,
    )
    result = validate_entra(df)
    assert result.quarantine.height == 1000
    assert result.valid.height == n - 1000


def test_so_invalid_rows_are_excluded_with_reasons() -> None:
    """SuperOffice rows with a missing or duplicate id, an unknown type or no retired flag are excluded."""
    rows = [
        so_user(1),
        so_user(2, user_type="Robot"),
        so_user(3, retired=None),
        so_user(4, user_name="x\x00y"),
        so_user(5),
        so_user(5, user_name="other@contoso.com"),
    ]
    result = validate_so(so_frame(*rows))
    got = {(r["associate_id"], r["reason"]) for r in result.quarantine.iter_rows(named=True)}
    assert got == {
        (
            2,
            "user_type: Robot is not one of InternalAssociate, ResourceAssociate, ExternalAssociate, "
            "AnonymousAssociate, SystemAssociate, Unknown",
        ),
        (3, "retired: missing"),
        (4, "user_name: contains a NUL byte or another control character"),
        (5, "associate_id: duplicate associate_id shared with 1 other user"),
    }
    assert result.valid.get_column("associate_id").to_list() == [1]
    assert result.quarantine.columns == ["associate_id", "key", "reason"]


def test_so_structure_is_checked() -> None:
    """A SuperOffice frame without associate_id raises SchemaViolation naming it."""
    with pytest.raises(SchemaViolation, match="associate_id"):
        validate_so(so_frame(so_user(1)).drop("associate_id"))


def test_entra_partners_of_excluded_so_rows_are_blocked() -> None:
    """An Entra user whose UPN or mail matches an excluded SuperOffice row is returned for quarantine."""
    so = so_frame(
        so_user(1, user_type="Robot", user_name=" USER1@contoso.com"), so_user(2, email="x@y.com", retired=None)
    )
    entra = entra_frame(entra_user(1), entra_user(2, mail="X@y.com"), entra_user(3))
    blocked = entra_blocked_by_so(entra, so, validate_so(so).quarantine)
    assert blocked.get_column("id").to_list() == [entra_user(1)["id"], entra_user(2)["id"]]
    assert all("associate" in r for r in blocked.get_column("reason"))


def plan_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "action": "update",
        "key": "kari@contoso.com",
        "entra_id": "e-1",
        "associate_id": 11,
        "rules": ["Sales"],
        "changes": json.dumps({"title": {"from": "a", "to": "b"}}),
        "reason": None,
    }
    return {**row, **overrides}


def plan_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    schema = {
        "action": pl.String,
        "key": pl.String,
        "entra_id": pl.String,
        "associate_id": pl.Int64,
        "rules": pl.List(pl.String),
        "changes": pl.String,
        "reason": pl.String,
    }
    return pl.DataFrame(list(rows), schema=schema)


def test_plan_frame_contract_accepts_good_rows() -> None:
    """A plan of well-formed rows passes validate_plan unchanged."""
    df = plan_frame(
        plan_row(),
        plan_row(action="create", key="ola@contoso.com", entra_id="e-2", associate_id=None),
        plan_row(action="retire", key="sara@contoso.com", entra_id="e-3", reason="disabled in Entra ID", rules=[]),
        plan_row(action="conflict", key="c@contoso.com", entra_id="e-4", associate_id=None, changes="{}", reason="two"),
    )
    assert validate_plan(df) is df
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        PlanRowModel.validate(df)


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (plan_row(action="delete"), "action"),
        (plan_row(key=None), "key: missing"),
        (plan_row(action="retire"), "reason"),
        (plan_row(action="create"), "associate_id"),
        (plan_row(action="quarantine", reason="bad"), "changes"),
    ],
    ids=["unknown-action", "no-key", "retire-without-reason", "create-with-partner", "quarantine-with-changes"],
)
def test_plan_frame_contract_rejects_bad_rows(row: dict[str, Any], fragment: str) -> None:
    """A plan row breaking the plan-file contract raises SchemaViolation naming the field."""
    with pytest.raises(SchemaViolation, match=fragment):
        validate_plan(plan_frame(row))


def test_so_model_accepts_a_clean_row() -> None:
    """A clean SuperOffice row passes both validate_so and Pandera's own validation."""
    assert validate_so(so_frame(so_user(1))).quarantine.is_empty()
    SuperOfficeUserModel.validate(so_frame(so_user(1)))
