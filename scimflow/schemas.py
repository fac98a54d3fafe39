"""Pandera models (polars backend) for the canonical frames, and row-level quarantine.

The validate stage sits between extraction and planning (ARCHITECTURE.md, "The pipeline"):

* :func:`validate_entra` splits the Entra frame into rows the planner may use and a quarantine frame
  (``id``, ``key``, ``reason``) that goes to the planner's ``quarantine`` argument, so each of those
  users becomes a ``quarantine`` row of the plan and its partner is not touched.
* :func:`validate_so` splits the SuperOffice frame likewise (``associate_id``, ``key``, ``reason``).
  Decision: a SuperOffice row that fails is left out of the planner's input, so it is never matched,
  updated or retired, and is reported with its reason. Dropping it alone could make its Entra partner
  look partner-less (a ``create`` of a second user with the same login), so
  :func:`entra_blocked_by_so` returns the Entra users whose ``userPrincipalName`` or ``mail`` equals
  (trimmed, case-insensitively) an excluded row's ``user_name`` or ``email``; the pipeline adds them to
  the Entra quarantine. Only damage that makes a row unsafe to act on is checked: a missing or
  duplicated ``associate_id``, an unknown ``user_type``, a missing ``retired`` flag, control characters.
* :func:`validate_plan` checks a plan frame; any failure there is a bug and raises.

Structural problems (a missing column, a wrong dtype) cannot be blamed on a row: they raise
:class:`SchemaViolation`, naming the column and the expected type. Everything else is row-level and lazy:
every failed check of a row is collected into one sentence, e.g.
``"userPrincipalName: missing; displayName: longer than 256 characters"``.

Pandera gotchas handled here (reference/prefect-polars-pandera.md §2): ``nullable=True`` marks columns
whose values may be null (``Optional`` would mean "column may be absent"); every pattern ends with ``$``;
validation always runs on a collected ``DataFrame`` with the data depth forced on, so an environment
setting (``PANDERA_VALIDATION_DEPTH`` / ``PANDERA_VALIDATION_ENABLED``) cannot silently skip checks.
"""

# Column attributes carry Graph's camelCase names (N815); Pandera passes the model class to checks (N805).
# ruff: noqa: N815, N805

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check
from pandera.api.polars.types import PolarsData
from pandera.backends.polars import builtin_checks as _builtin_checks  # registers the polars check functions
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from scimflow.errors import ScimflowError
from scimflow.vocab import CASE_INSENSITIVE, ROW_ACTIONS, norm_expr

__all__ = [
    "ACTIONS",
    "ENTRA_MAX_LENGTHS",
    "SO_USER_TYPES",
    "EntraUserModel",
    "PlanRowModel",
    "SchemaViolation",
    "SuperOfficeUserModel",
    "ValidationResult",
    "entra_blocked_by_so",
    "validate_entra",
    "validate_plan",
    "validate_so",
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


def _key(column: str) -> pl.Expr:
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
        key = _key("userPrincipalName")
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


# --- evaluating the models row by row ------------------------------------------------------------------
#
# Pandera's own lazy validation reports row failures as Python objects (``failure_cases``); with many
# failing rows that costs seconds. The row-level checks are Polars expressions already, so they are
# evaluated here straight from the model (the single source of truth), all in one query, and each failure
# becomes a phrase. tests/test_schemas.py checks that what passes here passes ``Model.validate`` too.


def _structural_problems(model: type[pa.DataFrameModel], df: pl.DataFrame) -> list[str]:
    """Missing columns and wrong dtypes, one sentence each (empty when the structure is right)."""
    columns = model.to_schema().columns
    try:
        with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_ONLY):
            model.validate(df, lazy=True)
    except SchemaErrors as exc:
        problems = []
        for case in exc.failure_cases.iter_rows(named=True):
            name, check, found = case["column"], str(case["check"]), case["failure_case"]
            if check == "column_in_dataframe":
                problems.append(f"column {found!r} is missing (expected {columns[found].dtype})")
            elif check.startswith("dtype("):
                problems.append(f"column {name!r} has type {found}, expected {columns[name].dtype}")
            else:
                problems.append(f"column {name!r}: {check} ({found})")
        return problems
    return []


#: Phrases of the dataframe-level checks: (field named in the reason, phrase expression).
_DATAFRAME_PHRASES: dict[str, tuple[str, pl.Expr]] = {
    "upn_unique": (
        "userPrincipalName",
        pl.format(
            "userPrincipalName: duplicate userPrincipalName shared with {} other {}",
            pl.len().over(_key("userPrincipalName")) - 1,
            pl.when(pl.len().over(_key("userPrincipalName")) == 2).then(pl.lit("user")).otherwise(pl.lit("users")),
        ),
    ),
    "usable_name": (
        "displayName",
        pl.lit("displayName: no usable name (displayName, givenName and surname are all empty)"),
    ),
    "reason_where_required": ("reason", pl.format("reason: required for {} and only for it", pl.col("action"))),
    "partner_where_required": ("associate_id", pl.format("associate_id: wrong presence for {}", pl.col("action"))),
    "no_changes_when_untouched": ("changes", pl.format("changes: must be empty for {}", pl.col("action"))),
}


def _column_phrase(column: str, check: Check) -> pl.Expr:
    """The phrase for a failed column check, naming the field."""
    stats: dict[str, Any] = check.statistics or {}
    if check.name == "str_length":
        return pl.lit(f"{column}: longer than {stats['max_value']} characters")
    if check.name == "str_matches" and column == "userPrincipalName":
        return pl.lit("userPrincipalName: not a valid user principal name")
    if check.name == "str_matches":
        return pl.lit(f"{column}: not in the expected format")
    if check.name == "isin":
        return pl.format(f"{column}: {{}} is not one of {', '.join(map(str, stats['allowed_values']))}", pl.col(column))
    if check.name == "no_control_characters":
        return pl.lit(f"{column}: contains a NUL byte or another control character")
    return pl.lit(f"{column}: failed {check.name}")


def _duplicate_phrase(column: str) -> pl.Expr:
    others = pl.len().over(column) - 1
    noun = pl.when(others == 1).then(pl.lit("user")).otherwise(pl.lit("users"))
    return pl.format(f"{column}: duplicate {column} shared with {{}} other {{}}", others, noun)


def _check_output(check: Check, lf: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """One boolean column, true where the row passes (null passes when the check ignores nulls)."""
    if check.element_wise:  # not used by these models; Python per row would defeat the point
        raise TypeError(f"element-wise check {check.name!r} is not supported here")
    out = PolarsCheckBackend(check).apply(PolarsData(lf, key))  # Pandera's own evaluation, as a LazyFrame
    passed = pl.all_horizontal(pl.all())
    return out.select((passed | passed.is_null()) if check.ignore_na else passed.fill_null(value=False))


def _row_reasons(model: type[pa.DataFrameModel], df: pl.DataFrame) -> pl.Series:
    """For each row: null when every check passes, else every failure as one sentence, in column order."""
    schema = model.to_schema()
    order = {name: i for i, name in enumerate(schema.columns)}
    lf = df.lazy()
    checks: list[tuple[int, pl.LazyFrame, pl.Expr]] = []  # (position of the field named, pass flags, phrase)
    for name, column in schema.columns.items():
        if not column.nullable:
            checks.append((order[name], lf.select(pl.col(name).is_not_null()), pl.lit(f"{name}: missing")))
        if column.unique:
            unique = lf.select(pl.col(name).is_null() | pl.col(name).is_unique())
            checks.append((order[name], unique, _duplicate_phrase(name)))
        checks.extend(
            (order[name], _check_output(check, lf, name), _column_phrase(name, check)) for check in column.checks
        )
    for check in schema.checks:
        field_name, phrase = _DATAFRAME_PHRASES[check.name]
        checks.append((order.get(field_name, len(order)), _check_output(check, lf, "*"), phrase))
    checks.sort(key=lambda item: item[0])  # stable: within a field, the order above
    if not checks:
        return pl.Series("reason", [None] * df.height, dtype=pl.String)
    flags = pl.concat(
        [output.select(pl.first().alias(f"ok{i}")) for i, (_, output, _) in enumerate(checks)], how="horizontal"
    )
    failed = [pl.when(~pl.col(f"ok{i}")).then(phrase) for i, (_, _, phrase) in enumerate(checks)]
    reasons = pl.concat_str(failed, separator="; ", ignore_nulls=True)  # (concat_list is 20x slower here)
    return (
        pl.concat([lf, flags], how="horizontal")
        .select(pl.when(reasons != "").then(reasons).alias("reason"))
        .collect()
        .to_series()
    )


def _split(
    model: type[pa.DataFrameModel],
    df: pl.DataFrame,
    *,
    identity: str,
    key: pl.Expr,
) -> ValidationResult:
    problems = _structural_problems(model, df)
    if problems:
        raise SchemaViolation(str(model.Config.name), problems)
    rows = df.with_columns(_row_reasons(model, df).alias("__reason"))
    bad = rows.filter(pl.col("__reason").is_not_null())
    quarantine = (
        bad.with_row_index("__row")
        .select(
            identity,
            pl.coalesce(key, pl.col(identity).cast(pl.String), pl.format("row {}", pl.col("__row"))).alias("key"),
            pl.col("__reason").alias("reason"),
        )
        .sort("key", identity, nulls_last=True)
    )
    valid = rows.filter(pl.col("__reason").is_null()).drop("__reason")
    return ValidationResult(valid=valid, quarantine=quarantine)


def validate_entra(df: pl.DataFrame) -> ValidationResult:
    """Split the Entra frame into valid rows and quarantined rows (``id``, ``key``, ``reason``).

    ``key`` is the plan's key (trimmed, lower-cased UPN; the id where there is none). Every row of a
    duplicated UPN (compared trimmed and case-insensitively) or id is quarantined.

    Raises:
        SchemaViolation: a column is missing or has the wrong dtype.
    """
    return _split(EntraUserModel, df, identity="id", key=_key("userPrincipalName"))


def validate_so(df: pl.DataFrame) -> ValidationResult:
    """Split the SuperOffice frame into valid rows and excluded rows (``associate_id``, ``key``, ``reason``).

    Excluded rows are left out of matching; see the module docstring and :func:`entra_blocked_by_so`.
    ``key`` is the trimmed, lower-cased ``user_name`` (the associate id where there is none).

    Raises:
        SchemaViolation: a column is missing or has the wrong dtype.
    """
    return _split(
        SuperOfficeUserModel,
        df,
        identity="associate_id",
        key=_key("user_name"),
    )


def entra_blocked_by_so(entra: pl.DataFrame, so: pl.DataFrame, excluded: pl.DataFrame) -> pl.DataFrame:
    """Entra users (``id``, ``key``, ``reason``) who could match an excluded SuperOffice row.

    ``so`` is the SuperOffice frame before validation and ``excluded`` the ``quarantine`` of
    :func:`validate_so`. An Entra user whose UPN or mail equals (trimmed, case-insensitively) an excluded
    row's ``user_name`` or ``email`` would otherwise be planned without that partner (a ``create`` of a
    second user); quarantining it leaves both sides untouched until the SuperOffice row is repaired.
    """
    bad = so.join(excluded.select("associate_id"), on="associate_id", how="semi")
    so_keys = pl.concat(
        [bad.select("associate_id", _key(column).alias("match_key")) for column in sorted(CASE_INSENSITIVE)]
    ).drop_nulls("match_key")
    entra_keys = pl.concat(
        [
            entra.select("id", _key("userPrincipalName").alias("key"), _key(column).alias("match_key"))
            for column in ("userPrincipalName", "mail")
        ]
    ).drop_nulls("match_key")
    return (
        entra_keys.join(so_keys, on="match_key", how="inner")
        .group_by("id", "key")
        .agg(pl.col("associate_id").unique().sort())
        .select(
            "id",
            pl.coalesce("key", "id").alias("key"),
            pl.format(
                "its SuperOffice partner is invalid and excluded from matching (associate {})",
                pl.col("associate_id").cast(pl.List(pl.String)).list.join(", "),
            ).alias("reason"),
        )
        .sort("key", "id")
    )


def validate_plan(df: pl.DataFrame) -> pl.DataFrame:
    """Check a plan frame; return it unchanged when it conforms.

    Raises:
        SchemaViolation: a structural problem, or any row breaking the plan contract (a planner bug).
    """
    problems = _structural_problems(PlanRowModel, df)
    if problems:
        raise SchemaViolation("plan", problems)
    reasons = _row_reasons(PlanRowModel, df)
    failing = df.select("key", "action").with_columns(reasons.alias("reason")).filter(pl.col("reason").is_not_null())
    if failing.height:
        raise SchemaViolation(
            "plan", [f"{r['action']} row {r['key']!r}: {r['reason']}" for r in failing.head(5).iter_rows(named=True)]
        )
    return df
