"""The Pandera models (polars backend) of the canonical frames, and the constants they are built from.

:class:`EntraUserModel`, :class:`SuperOfficeUserModel` and :class:`PlanRowModel` are the single source of
truth for what a row must satisfy; :mod:`._reasons` evaluates them row by row and :mod:`._validate`
splits frames with them (see :mod:`scimflow.schemas`).
"""

# Column attributes carry Graph's camelCase names (N815); Pandera passes the model class to checks (N805).
# ruff: noqa: N815, N805

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars import builtin_checks as _builtin_checks  # registers the polars check functions

from scimflow.errors import ScimflowError
from scimflow.vocab import ROW_ACTIONS, norm_expr

__all__ = [
    "ACTIONS",
    "ENTRA_MAX_LENGTHS",
    "SO_USER_TYPES",
    "UPN_PATTERN",
    "EntraUserModel",
    "PlanRowModel",
    "SchemaViolation",
    "SuperOfficeUserModel",
    "ValidationResult",
    "match_key",
]

#: Graph's documented maximum lengths (reference/graph.md, DC ``resources/user.md``).
ENTRA_MAX_LENGTHS: dict[str, int] = {
    "userPrincipalName": 113,  # 64 (local part) + "@" + 48 (domain), as Entra documents
    "displayName": 256,
    "givenName": 64,
    "surname": 64,
    "jobTitle": 128,
    "mobilePhone": 64,
    "department": 64,
    "companyName": 64,
    "employeeId": 16,
    "country": 128,
}

#: ``User.Type`` values of the SuperOffice Web API (reference/superoffice.md §User).
SO_USER_TYPES: tuple[str, ...] = (
    "InternalAssociate",
    "ResourceAssociate",
    "ExternalAssociate",
    "AnonymousAssociate",
    "SystemAssociate",
    "Unknown",
)

#: The plan's actions (ARCHITECTURE.md, "Plan files"): the vocabulary's row actions.
ACTIONS: tuple[str, ...] = ROW_ACTIONS

# A UPN / e-mail address: a local part without spaces or '@', '@', and a dotted DNS name. Surrounding
# spaces are tolerated (keys are compared trimmed). Anchored at both ends: str_matches only anchors the start.
# Entra UPNs: the local part is ASCII letters, digits and ' . - _ ! # ^ ~ (Microsoft's documented set);
# anything else (a Cyrillic look-alike, say) is quarantined rather than renaming a SuperOffice user.
UPN_PATTERN = (
    r"^\s*[A-Za-z0-9'._!#^~&+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\s*$"
)
# C0 control characters (NUL included) and DEL.
_CONTROL = r"[\x00-\x1f\x7f]"

_ENTRA_STRINGS = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "employeeId",
    "employeeType",
    "mobilePhone",
    "country",
    "city",
    "companyName",
    "officeLocation",
    "usageLocation",
    "userType",
)
_SO_STRINGS = (
    "name",
    "user_name",
    "user_type",
    "first_name",
    "last_name",
    "email",
    "title",
    "mobile_phone",
    "role",
    "primary_group",
    "owner_company",
    "user_plan",
)


del _builtin_checks


class SchemaViolation(ScimflowError, ValueError):  # noqa: N818 (the name the pipeline and the issue use)
    """A frame's structure is wrong (missing column, wrong dtype): no row can be trusted, so the run stops.

    ``problems`` lists one sentence per problem, each naming the column and the expected type.
    """

    def __init__(self, frame: str, problems: list[str]) -> None:
        self.frame = frame
        self.problems = problems
        super().__init__(f"{frame} frame is malformed: " + "; ".join(problems))


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed (same columns as the input) and rows that did not (identifier, ``key``, ``reason``)."""

    valid: pl.DataFrame
    quarantine: pl.DataFrame


def match_key(column: str) -> pl.Expr:
    """The matching key of a string column: trimmed, lower-cased, blank as null (the vocabulary's form)."""
    return norm_expr("user_name", pl.col(column))


def _no_control(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).str.contains(_CONTROL).not_())


def _blank(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")


class EntraUserModel(pa.DataFrameModel):
    """The Entra frame (``frames.ENTRA_SCHEMA``): one row per Graph user, groups resolved transitively."""

    id: str = pa.Field(nullable=False, unique=True)
    userPrincipalName: str = pa.Field(
        nullable=False, str_matches=UPN_PATTERN, str_length={"max_value": ENTRA_MAX_LENGTHS["userPrincipalName"]}
    )
    mail: str = pa.Field(nullable=True)
    displayName: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["displayName"]})
    givenName: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["givenName"]})
    surname: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["surname"]})
    jobTitle: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["jobTitle"]})
    department: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["department"]})
    # Null would leave "disabled?" unanswered: neither create nor retire is safe, so it is quarantined.
    accountEnabled: bool = pa.Field(nullable=False)
    employeeId: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["employeeId"]})
    employeeType: str = pa.Field(nullable=True)
    mobilePhone: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["mobilePhone"]})
    businessPhones: Annotated[pl.List, pl.String()] = pa.Field(nullable=True)
    country: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["country"]})
    city: str = pa.Field(nullable=True)
    companyName: str = pa.Field(nullable=True, str_length={"max_value": ENTRA_MAX_LENGTHS["companyName"]})
    officeLocation: str = pa.Field(nullable=True)
    usageLocation: str = pa.Field(nullable=True)
    userType: str = pa.Field(nullable=True)
    groups: Annotated[pl.List, pl.String()] = pa.Field(nullable=True)
    group_ids: Annotated[pl.List, pl.String()] = pa.Field(nullable=True)

    class Config:
        name = "Entra users"
        strict = False  # extra columns pass through untouched

    @pa.check(*_ENTRA_STRINGS, name="no_control_characters")
    def no_control_characters(cls, data: PolarsData) -> pl.LazyFrame:
        """No NUL byte or other control character in any string attribute."""
        return _no_control(data)

    @pa.dataframe_check(name="upn_unique")
    def upn_unique(cls, data: PolarsData) -> pl.LazyFrame:
        """``userPrincipalName`` is unique once trimmed and lower-cased (matching compares it that way)."""
        key = match_key("userPrincipalName")
        return data.lazyframe.select(key.is_null() | key.is_unique())

    @pa.dataframe_check(name="usable_name")
    def usable_name(cls, data: PolarsData) -> pl.LazyFrame:
        """``displayName``, ``givenName`` and ``surname`` are not all empty."""
        return data.lazyframe.select(~(_blank("displayName") & _blank("givenName") & _blank("surname")))


class SuperOfficeUserModel(pa.DataFrameModel):
    """The SuperOffice frame (``frames.SO_SCHEMA``): every user type, retired users included."""

    associate_id: int = pa.Field(nullable=False, unique=True)
    name: str = pa.Field(nullable=True)
    user_name: str = pa.Field(nullable=True)
    user_type: str = pa.Field(nullable=False, isin=list(SO_USER_TYPES))
    retired: bool = pa.Field(nullable=False)
    person_id: int = pa.Field(nullable=True)
    first_name: str = pa.Field(nullable=True)
    last_name: str = pa.Field(nullable=True)
    email: str = pa.Field(nullable=True)
    title: str = pa.Field(nullable=True)
    mobile_phone: str = pa.Field(nullable=True)
    role: str = pa.Field(nullable=True)
    primary_group: str = pa.Field(nullable=True)
    secondary_groups: Annotated[pl.List, pl.String()] = pa.Field(nullable=True)
    owner_company: str = pa.Field(nullable=True)
    contact_id: int = pa.Field(nullable=True)
    user_plan: str = pa.Field(nullable=True)
    confidential: bool = pa.Field(nullable=True)

    class Config:
        name = "SuperOffice users"
        strict = False

    @pa.check(*_SO_STRINGS, name="no_control_characters")
    def no_control_characters(cls, data: PolarsData) -> pl.LazyFrame:
        """No NUL byte or other control character in any string field."""
        return _no_control(data)


class PlanRowModel(pa.DataFrameModel):
    """The plan frame (``Plan.rows``): one row per user whose action is not ``unchanged``."""

    action: str = pa.Field(nullable=False, isin=list(ACTIONS))
    key: str = pa.Field(nullable=False)
    entra_id: str = pa.Field(nullable=False, unique=True)
    associate_id: int = pa.Field(nullable=True)
    rules: Annotated[pl.List, pl.String()] = pa.Field(nullable=False)
    changes: str = pa.Field(nullable=False, str_matches=r"^\{.*\}$")
    reason: str = pa.Field(nullable=True)

    class Config:
        name = "plan"
        strict = False  # explain and other analysis columns may follow

    @pa.dataframe_check(name="reason_where_required")
    def reason_where_required(cls, data: PolarsData) -> pl.LazyFrame:
        """Quarantine, conflict and retire rows say why; the others have no reason."""
        needs = pl.col("action").is_in(["quarantine", "conflict", "retire"])
        return data.lazyframe.select(needs == pl.col("reason").is_not_null())

    @pa.dataframe_check(name="partner_where_required")
    def partner_where_required(cls, data: PolarsData) -> pl.LazyFrame:
        """A create has no SuperOffice partner; update, retire and reactivate have one."""
        action, partner = pl.col("action"), pl.col("associate_id").is_not_null()
        return data.lazyframe.select(
            pl.when(action == "create")
            .then(~partner)
            .when(action.is_in(["update", "retire", "reactivate"]))
            .then(partner)
            .otherwise(pl.lit(value=True))
        )

    @pa.dataframe_check(name="no_changes_when_untouched")
    def no_changes_when_untouched(cls, data: PolarsData) -> pl.LazyFrame:
        """Quarantine and conflict rows change nothing."""
        untouched = pl.col("action").is_in(["quarantine", "conflict"])
        return data.lazyframe.select(~untouched | (pl.col("changes") == "{}"))
