"""Helpers to build Entra / SuperOffice frames for planner tests (small hand-made ones and big synthetic ones)."""

from __future__ import annotations

from typing import Any

import polars as pl

from scimflow.frames import ENTRA_SCHEMA, SO_SCHEMA, Reference, conform

__all__ = ["entra", "reference", "so", "synthetic_tenant"]


def entra(*users: dict[str, Any]) -> pl.DataFrame:
    """An Entra frame from partial user dicts (``id`` and ``userPrincipalName`` given; enabled by default)."""
    rows = []
    for u in users:
        row: dict[str, Any] = {"accountEnabled": True, "groups": [], "group_ids": []}
        row.update(u)
        if "group_ids" not in u:
            row["group_ids"] = [f"gid-{g}" for g in row["groups"]]
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema=ENTRA_SCHEMA)
    return conform(pl.DataFrame(rows, infer_schema_length=None), ENTRA_SCHEMA)


def so(*users: dict[str, Any]) -> pl.DataFrame:
    """A SuperOffice frame from partial user dicts (InternalAssociate, active, no groups by default)."""
    rows = []
    for u in users:
        row: dict[str, Any] = {"user_type": "InternalAssociate", "retired": False, "secondary_groups": []}
        row.update(u)
        rows.append(row)
    if not rows:
        return pl.DataFrame(schema=SO_SCHEMA)
    return conform(pl.DataFrame(rows, infer_schema_length=None), SO_SCHEMA)


def reference(
    roles: tuple[str, ...] = ("User", "Sales", "Manager"),
    groups: tuple[str, ...] = ("Fallback group", "Sales Norway", "Support"),
    plans: tuple[str, ...] = ("Sales Premium", "Service Premium"),
    companies: tuple[str, ...] = ("Contoso AS",),
) -> Reference:
    """Reference lists with the given display names."""
    return Reference(
        roles=pl.DataFrame({"id": list(range(1, len(roles) + 1)), "name": list(roles)}),
        groups=pl.DataFrame({"id": list(range(1, len(groups) + 1)), "name": list(groups)}),
        plans=pl.DataFrame({"license": [f"lic-{i}" for i in range(len(plans))], "name": list(plans)}),
        companies=pl.DataFrame({"id": list(range(1, len(companies) + 1)), "name": list(companies)}),
    )


def synthetic_tenant(n: int, *, seed: int = 1) -> tuple[pl.DataFrame, pl.DataFrame, Reference, pl.DataFrame, str]:
    """A tenant of ``n`` Entra and ``n`` SuperOffice users (mostly matching), links for half, and 20 rules.

    Returns ``(entra, so, reference, links, rules_yaml)``. Built with Polars expressions (fast at 1M).
    """
    i = pl.int_range(0, n, eager=True).alias("i")
    groups = [f"G{g}" for g in range(30)]
    e = (
        pl.DataFrame(i)
        .select(
            pl.format("00000000-0000-0000-0000-{}", pl.col("i").cast(pl.String).str.zfill(12)).alias("id"),
            pl.format("user{}@contoso.com", pl.col("i")).alias("userPrincipalName"),
            pl.format("User{}@contoso.com", pl.col("i")).alias("mail"),
            pl.format("First{}", pl.col("i") % 997).alias("givenName"),
            pl.format("Last{}", pl.col("i") % 1009).alias("surname"),
            pl.when(pl.col("i") % 7 == 0).then(pl.lit("Sales Manager")).otherwise(pl.lit("Engineer")).alias("jobTitle"),
            pl.when(pl.col("i") % 3 == 0).then(pl.lit("Sales")).otherwise(pl.lit("R&D")).alias("department"),
            (pl.col("i") % 50 != 0).alias("accountEnabled"),
            pl.when(pl.col("i") % 2 == 0).then(pl.lit("NO")).otherwise(pl.lit("SE")).alias("country"),
            pl.concat_list([pl.format("G{}", (pl.col("i") * k + seed) % 30) for k in (1, 7, 13)])
            .list.unique()
            .list.sort()
            .alias("groups"),
        )
        .with_columns(pl.col("groups").list.eval(pl.format("gid-{}", pl.element())).alias("group_ids"))
    )
    e = conform(e, ENTRA_SCHEMA)
    # SuperOffice: users 5%..105% of n (so 5% to create, 5% unmatched in SO), some differing, some retired
    j = pl.int_range(n // 20, n + n // 20, eager=True).alias("i")
    s = pl.DataFrame(j).select(
        (pl.col("i") + 1).alias("associate_id"),
        pl.format("U{}", pl.col("i")).alias("name"),
        pl.format("user{}@contoso.com", pl.col("i")).alias("user_name"),
        pl.lit("InternalAssociate").alias("user_type"),
        (pl.col("i") % 97 == 0).alias("retired"),
        pl.format("First{}", pl.col("i") % 997).alias("first_name"),
        pl.format("Last{}", pl.col("i") % 1009).alias("last_name"),
        pl.format("user{}@contoso.com", pl.col("i")).alias("email"),
        pl.when(pl.col("i") % 11 == 0)
        .then(pl.lit("Old title"))
        .otherwise(pl.when(pl.col("i") % 7 == 0).then(pl.lit("Sales Manager")).otherwise(pl.lit("Engineer")))
        .alias("title"),
        pl.lit("User").alias("role"),
        pl.lit("Fallback group").alias("primary_group"),
        pl.lit([], dtype=pl.List(pl.String)).alias("secondary_groups"),
        pl.lit("Contoso AS").alias("owner_company"),
        pl.lit(False).alias("confidential"),
    )
    s = conform(s, SO_SCHEMA)
    links = e.head(n // 2).select(pl.col("id").alias("entra_id"), (pl.int_range(0, pl.len()) + 1).alias("associate_id"))
    links = links.filter(pl.col("associate_id") > n // 20)
    ref = reference(
        roles=("User", "Sales", "Manager", "Support"),
        groups=("Fallback group", *groups),
        plans=("Sales Premium", "Service Premium"),
    )
    rules = [
        "version: 1",
        "deprovision: retire",
        "rules:",
        "  - name: Everyone",
        "    when: {all: true}",
        "    set: {primary_group: Fallback group, role: {value: User, scope: if_not_set}, owner_company: Contoso AS}",
    ]
    for g in range(17):
        rules += [f"  - name: Group {g}", f"    when: {{in_group: G{g}}}", f"    set: {{secondary_groups: [G{g}]}}"]
    rules += [
        "  - name: Sales",
        "    when: {expr: \"department = 'Sales' AND country IN ('NO', 'SE')\"}",
        "    set: {user_plan: Sales Premium, role: Sales}",
        "  - name: Managers",
        "    when: {expr: \"jobTitle LIKE '%Manager%'\"}",
        "    set: {role: Manager}",
    ]
    return e, s, ref, links, "\n".join(rules) + "\n"
