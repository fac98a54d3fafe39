"""The canonical frames passed between stages: their column names and Polars dtypes.

These are the internal contract between the connectors (which produce them), the validation stage
(which checks them with Pandera) and the planner (which joins them). Every producer must return exactly
these columns in this order (use :func:`conform`); extra Graph attributes are not carried.

Entra frame (one row per Entra user, from Graph):
    the Graph user attributes of :data:`GRAPH_USER_FIELDS` under their Graph names (``id``,
    ``userPrincipalName``, ``accountEnabled``, ...), plus
    ``groups``   list of display names of every group the user is a transitive member of,
    ``group_ids`` list of those groups' object ids.

SuperOffice frame (one row per SuperOffice user of any type, retired included, from the AllUsers archive
plus persons):
    ``associate_id``, ``name`` (the short User ID), ``user_name`` (login, the UPN when federated),
    ``user_type`` (``InternalAssociate``, ``SystemAssociate``, ...), ``retired`` (``Deleted``),
    ``person_id``, ``first_name``, ``last_name``, ``email``, ``title``, ``mobile_phone``,
    ``role``, ``primary_group``, ``secondary_groups`` (display names), ``owner_company`` (contact name),
    ``contact_id``, ``user_plan`` (the plan's display name, ``None`` for none / "Not selected"),
    ``confidential`` (the ``visible-for`` licence).

Reference lists (:class:`Reference`): roles, user groups, user plans and companies of the tenant, for
resolving rule values (display names) to ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

__all__ = [
    "ENTRA_SCHEMA",
    "GRAPH_USER_FIELDS",
    "SO_SCHEMA",
    "Reference",
    "conform",
    "empty_entra",
    "empty_so",
]

#: The Graph user properties scimflow reads (``$select``) and that rules' ``expr`` may use.
GRAPH_USER_FIELDS: tuple[str, ...] = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "department",
    "accountEnabled",
    "employeeId",
    "employeeType",
    "mobilePhone",
    "businessPhones",
    "country",
    "city",
    "companyName",
    "officeLocation",
    "usageLocation",
    "userType",
)


def _graph_dtype(name: str) -> pl.DataType:
    if name == "accountEnabled":
        return pl.Boolean()
    if name == "businessPhones":
        return pl.List(pl.String)
    return pl.String()


ENTRA_SCHEMA: pl.Schema = pl.Schema(
    [(name, _graph_dtype(name)) for name in GRAPH_USER_FIELDS]
    + [("groups", pl.List(pl.String)), ("group_ids", pl.List(pl.String))]
)

_SO_COLUMNS: dict[str, pl.DataType] = {
    "associate_id": pl.Int64(),
    "name": pl.String(),
    "user_name": pl.String(),
    "user_type": pl.String(),
    "retired": pl.Boolean(),
    "person_id": pl.Int64(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "email": pl.String(),
    "title": pl.String(),
    "mobile_phone": pl.String(),
    "role": pl.String(),
    "primary_group": pl.String(),
    "secondary_groups": pl.List(pl.String),
    "owner_company": pl.String(),
    "contact_id": pl.Int64(),
    "user_plan": pl.String(),
    "confidential": pl.Boolean(),
}
SO_SCHEMA: pl.Schema = pl.Schema(_SO_COLUMNS)

ROLE_SCHEMA = pl.Schema({"id": pl.Int64, "name": pl.String})
GROUP_SCHEMA = pl.Schema({"id": pl.Int64, "name": pl.String})
PLAN_SCHEMA = pl.Schema({"license": pl.String, "name": pl.String})
COMPANY_SCHEMA = pl.Schema({"id": pl.Int64, "name": pl.String})


def conform(df: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Return ``df`` with exactly ``schema``'s columns, in order, cast to its dtypes (missing → null)."""
    exprs = []
    for name, dtype in schema.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(exprs)


def empty_entra() -> pl.DataFrame:
    return pl.DataFrame(schema=ENTRA_SCHEMA)


def empty_so() -> pl.DataFrame:
    return pl.DataFrame(schema=SO_SCHEMA)


@dataclass(frozen=True)
class Reference:
    """The tenant's reference lists, as frames. Names are SuperOffice display names.

    ``plans.license`` is the module-licence name (``ten-sales``), ``plans.name`` its display name
    (``Sales Premium``); ``superlicense-no-selection`` ("Not selected") stands for *no plan*.
    """

    roles: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ROLE_SCHEMA))
    groups: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=GROUP_SCHEMA))
    plans: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PLAN_SCHEMA))
    companies: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=COMPANY_SCHEMA))

    def names(self, element: str) -> set[str]:
        """The valid display names for a rule element (``role``, ``primary_group``, ...)."""
        frame = {
            "role": self.roles,
            "primary_group": self.groups,
            "secondary_groups": self.groups,
            "user_plan": self.plans,
            "owner_company": self.companies,
        }[element]
        return set(frame.get_column("name").drop_nulls().to_list())

    @classmethod
    def from_fixture(cls, data: dict) -> Reference:  # type: ignore[type-arg]
        """Build from the emulator fixture format (``roles``, ``usergroups``, ``userplans``, ``contacts``)."""
        return cls(
            roles=pl.DataFrame(
                [{"id": r["Id"], "name": r["Value"]} for r in data.get("roles", [])], schema=ROLE_SCHEMA
            ),
            groups=pl.DataFrame(
                [{"id": g["Id"], "name": g["Value"]} for g in data.get("usergroups", [])], schema=GROUP_SCHEMA
            ),
            plans=pl.DataFrame(
                [{"license": p["Name"], "name": p["Description"]} for p in data.get("userplans", [])],
                schema=PLAN_SCHEMA,
            ),
            companies=pl.DataFrame(
                [{"id": c["ContactId"], "name": c["Name"]} for c in data.get("contacts", [])],
                schema=COMPANY_SCHEMA,
            ),
        )


NO_PLAN_LICENSE = "superlicense-no-selection"
CONFIDENTIAL_LICENSE = "visible-for"
