"""Evaluating the Pandera models row by row: structural problems, and one reason sentence per failing row.

Pandera's own lazy validation reports row failures as Python objects (``failure_cases``); with many
failing rows that costs seconds. The row-level checks are Polars expressions already, so they are
evaluated here straight from the model (the single source of truth), all in one query, and each failure
becomes a phrase. tests/test_schemas.py checks that what passes here passes ``Model.validate`` too.
"""

from __future__ import annotations

from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from scimflow.schemas._models import match_key

__all__ = ["row_reasons", "structural_problems"]


def structural_problems(model: type[pa.DataFrameModel], df: pl.DataFrame) -> list[str]:
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
            pl.len().over(match_key("userPrincipalName")) - 1,
            pl.when(pl.len().over(match_key("userPrincipalName")) == 2).then(pl.lit("user")).otherwise(pl.lit("users")),
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
    # Pandera's own evaluation; its backend is typed loosely (Any), it returns a LazyFrame.
    out: pl.LazyFrame = PolarsCheckBackend(check).apply(PolarsData(lf, key))
    passed = pl.all_horizontal(pl.all())
    return out.select((passed | passed.is_null()) if check.ignore_na else passed.fill_null(value=False))


def row_reasons(model: type[pa.DataFrameModel], df: pl.DataFrame) -> pl.Series:
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
