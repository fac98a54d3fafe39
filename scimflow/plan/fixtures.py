"""Frames from the emulator fixture format (G.json, S.json), as the connectors produce them over HTTP.

Used by ``run_plan_offline`` and the tests; it is also the reference the connectors are checked against.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from scimflow.frames import ENTRA_SCHEMA, SO_SCHEMA, Reference, conform

__all__ = ["entra_from_graph", "frames_from_fixtures", "so_from_superoffice"]

NO_PLAN_LICENSE = "superlicense-no-selection"
CONFIDENTIAL_LICENSE = "visible-for"


def frames_from_fixtures(graph: dict[str, Any], so: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame, Reference]:
    """``(entra frame, SuperOffice frame, reference lists)`` from the two fixture documents."""
    return entra_from_graph(graph), so_from_superoffice(so), Reference.from_fixture(so)


def _transitive_memberships(groups: list[dict[str, Any]]) -> pl.DataFrame:
    """``(member, group_id)`` for every direct or nested membership (joins until nothing new)."""
    edges = pl.DataFrame(
        [(m, g["id"]) for g in groups for m in g.get("members", [])],
        schema={"member": pl.String, "group_id": pl.String},
        orient="row",
    ).unique()
    parents = edges.rename({"member": "group_id", "group_id": "parent"})
    closure = edges
    frontier = edges
    while not frontier.is_empty():  # one join per nesting level, not per row
        step = frontier.join(parents, on="group_id").select("member", pl.col("parent").alias("group_id"))
        frontier = step.join(closure, on=["member", "group_id"], how="anti").unique()
        closure = pl.concat([closure, frontier])
    return closure


def entra_from_graph(graph: dict[str, Any]) -> pl.DataFrame:
    """The Entra frame (ENTRA_SCHEMA) with transitive ``groups`` / ``group_ids`` sorted by name then id."""
    if graph.get("users"):
        users = conform(pl.DataFrame(graph["users"], infer_schema_length=None), ENTRA_SCHEMA)
    else:  # conform() of a frame without columns would give one row of nulls
        users = pl.DataFrame(schema=ENTRA_SCHEMA)
    users = users.drop("groups", "group_ids")
    names = pl.DataFrame(
        [(g["id"], g.get("displayName")) for g in graph.get("groups", [])],
        schema={"group_id": pl.String, "name": pl.String},
        orient="row",
    )
    member = (
        _transitive_memberships(graph.get("groups", []))
        .join(names, on="group_id")
        .sort("member", "name", "group_id")
        .group_by("member", maintain_order=True)
        .agg(pl.col("name").alias("groups"), pl.col("group_id").alias("group_ids"))
    )
    out = users.join(member, left_on="id", right_on="member", how="left", maintain_order="left").with_columns(
        pl.col("groups").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("group_ids").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    return conform(out, ENTRA_SCHEMA)


def _value(obj: Any) -> Any:
    return obj.get("Value") if isinstance(obj, dict) else obj


def so_from_superoffice(so: dict[str, Any]) -> pl.DataFrame:
    """The SuperOffice frame (SO_SCHEMA): plan from licences, company from the person's contact."""
    plan_order = [p["Name"] for p in so.get("userplans", [])]
    plan_names = {p["Name"]: p["Description"] for p in so.get("userplans", [])}
    companies = {c["ContactId"]: c["Name"] for c in so.get("contacts", [])}
    rows = []
    for u in so.get("users", []):  # fixture parsing (the connectors read archives instead)
        assigned = {
            lic["Name"]
            for owner in u.get("LicenseOwners") or []
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses")
            for lic in owner.get(kind) or []
            if lic.get("Assigned")
        }
        plan = next((p for p in plan_order if p in assigned), None)
        person = u.get("Person") or {}
        contact = person.get("ContactId")
        rows.append(
            {
                "associate_id": u.get("AssociateId"),
                "name": u.get("Name"),
                "user_name": u.get("UserName"),
                "user_type": u.get("Type"),
                "retired": bool(u.get("Deleted")),
                "person_id": person.get("PersonId"),
                "first_name": person.get("Firstname"),
                "last_name": person.get("Lastname"),
                "email": person.get("Email"),
                "title": person.get("Title"),
                "mobile_phone": person.get("MobilePhone"),
                "role": _value(u.get("Role")),
                "primary_group": _value(u.get("UserGroup")),
                "secondary_groups": [_value(g) for g in u.get("OtherGroups") or []],
                "owner_company": companies.get(contact) if contact else None,
                "contact_id": contact,
                "user_plan": None if plan in (None, NO_PLAN_LICENSE) else plan_names[plan],
                "confidential": CONFIDENTIAL_LICENSE in assigned,
            }
        )
    return pl.DataFrame(rows, schema=SO_SCHEMA)
