"""The validate stage: split the Entra and SuperOffice frames into valid and quarantined rows; check a plan.

See :mod:`scimflow.schemas` for the decisions (what is quarantined, and why an excluded SuperOffice row
blocks its Entra look-alikes).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from scimflow.schemas._models import (
    EntraUserModel,
    PlanRowModel,
    SchemaViolation,
    SuperOfficeUserModel,
    ValidationResult,
    match_key,
)
from scimflow.schemas._reasons import row_reasons, structural_problems
from scimflow.vocab import CASE_INSENSITIVE

__all__ = ["entra_blocked_by_so", "validate_entra", "validate_plan", "validate_so"]


def _split(
    model: type[pa.DataFrameModel],
    df: pl.DataFrame,
    *,
    identity: str,
    key: pl.Expr,
) -> ValidationResult:
    problems = structural_problems(model, df)
    if problems:
        raise SchemaViolation(str(model.Config.name), problems)
    rows = df.with_columns(row_reasons(model, df).alias("__reason"))
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
    return _split(EntraUserModel, df, identity="id", key=match_key("userPrincipalName"))


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
        key=match_key("user_name"),
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
        [bad.select("associate_id", match_key(column).alias("match_key")) for column in sorted(CASE_INSENSITIVE)]
    ).drop_nulls("match_key")
    entra_keys = pl.concat(
        [
            entra.select("id", match_key("userPrincipalName").alias("key"), match_key(column).alias("match_key"))
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
    problems = structural_problems(PlanRowModel, df)
    if problems:
        raise SchemaViolation("plan", problems)
    reasons = row_reasons(PlanRowModel, df)
    failing = df.select("key", "action").with_columns(reasons.alias("reason")).filter(pl.col("reason").is_not_null())
    if failing.height:
        raise SchemaViolation(
            "plan", [f"{r['action']} row {r['key']!r}: {r['reason']}" for r in failing.head(5).iter_rows(named=True)]
        )
    return df
