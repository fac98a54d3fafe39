"""The tenant's reference lists (roles, user groups, user plans, companies) and their name → id maps.

Roles and groups come from ``GET /api/v1/MDOList/roles`` and ``/MDOList/usergroup`` (flattened, ``Id`` /
``Name``); user plans from the licence catalogue of the ``User/Default?userType=InternalAssociate&personId=0``
template — the module licences whose ``ExtraFlags`` has the user-plan bit, in ``SortOrder``, ``Name`` →
licence, ``Description`` → display name; companies from the Contact archive (``contactId``, ``name``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from scimflow.connectors.errors import PayloadError
from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._pages import ContactPages
from scimflow.connectors.superoffice._values import USER_PLAN_FLAG, as_id, blank, get
from scimflow.frames import COMPANY_SCHEMA, GROUP_SCHEMA, NO_PLAN_LICENSE, PLAN_SCHEMA, ROLE_SCHEMA, Reference

__all__ = ["TEMPLATE_PARAMS", "Maps", "read_reference", "ref_obj"]

log = logging.getLogger("scimflow.superoffice")

#: The ``User/Default`` query of the internal-user template (the same for every internal user).
TEMPLATE_PARAMS = {"userType": "InternalAssociate", "personId": 0}


class Maps:
    """Name → id lookups for one :class:`Reference` (built once per reference object)."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.roles = dict(zip(ref.roles["name"].to_list(), ref.roles["id"].to_list(), strict=True))
        self.groups = dict(zip(ref.groups["name"].to_list(), ref.groups["id"].to_list(), strict=True))
        self.plans = dict(zip(ref.plans["name"].to_list(), ref.plans["license"].to_list(), strict=True))
        self.plan_order: list[str] = ref.plans["license"].to_list()
        self.plan_names = dict(zip(ref.plans["license"].to_list(), ref.plans["name"].to_list(), strict=True))
        self.companies = dict(zip(ref.companies["name"].to_list(), ref.companies["id"].to_list(), strict=True))
        self.company_names = {v: k for k, v in self.companies.items()}

    def table(self, element: str) -> dict[str, Any]:
        """Display name → id (licence name for ``user_plan``) of an element's list."""
        return {
            "role": self.roles,
            "primary_group": self.groups,
            "secondary_groups": self.groups,
            "user_plan": self.plans,
            "owner_company": self.companies,
        }[element]

    def resolve(self, element: str, name: Any) -> Any:
        """The id of ``name`` in ``element``'s list; :class:`PayloadError` when the tenant has no such entry."""
        table = self.table(element)
        if name not in table:
            raise PayloadError(f"unknown {element.replace('_', ' ')} {name!r}: not in the tenant's list")
        return table[name]

    def plan_of(self, assigned: dict[str, bool]) -> str | None:
        """The display name of the first assigned plan licence in plan order (None for no plan)."""
        for lic in self.plan_order:
            if assigned.get(lic):
                return None if lic == NO_PLAN_LICENSE else self.plan_names[lic]
        return None


def ref_obj(maps: Maps, element: str, name: Any) -> dict[str, Any] | None:
    """The list object (``{"Id", "Value"}``) of ``name`` in ``element``'s list; ``None`` for no name."""
    if name is None:
        return None
    return {"Id": int(maps.resolve(element, name)), "Value": name}


def read_reference(api: WebApi) -> tuple[Reference, dict[str, Any]]:
    """The four lists, read side by side (the caller has logged in), and the internal-user template."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="scimflow-reference") as pool:
        roles_read = pool.submit(_mdo_list, api, "roles")
        groups_read = pool.submit(_mdo_list, api, "usergroup")
        template_read = pool.submit(api.send, "GET", "api/v1/User/Default", params=TEMPLATE_PARAMS)
        companies_read = pool.submit(_companies, api)
        roles, groups = roles_read.result(), groups_read.result()
        template = api.json(template_read.result())
        companies = companies_read.result()
    plans: list[tuple[int, str, str]] = []
    for owner in get(template, "LicenseOwners") or []:
        for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
            for lic in get(owner, kind) or []:
                flags = as_id(get(lic, "ExtraFlags")) or 0
                if flags & USER_PLAN_FLAG:
                    plans.append(
                        (
                            as_id(get(lic, "SortOrder")) or 0,
                            str(get(lic, "Name")),
                            str(get(lic, "Description") or get(lic, "Name")),
                        )
                    )
    plans.sort(key=lambda p: p[0])
    ref = Reference(
        roles=pl.DataFrame(roles, schema=ROLE_SCHEMA, orient="row"),
        groups=pl.DataFrame(groups, schema=GROUP_SCHEMA, orient="row"),
        plans=pl.DataFrame([(p[1], p[2]) for p in plans], schema=PLAN_SCHEMA, orient="row"),
        companies=pl.DataFrame(companies, schema=COMPANY_SCHEMA),
    )
    log.info(
        "SuperOffice reference: %d roles, %d groups, %d plans, %d companies",
        ref.roles.height,
        ref.groups.height,
        ref.plans.height,
        ref.companies.height,
    )
    return ref, template


def _companies(api: WebApi) -> list[dict[str, Any]]:
    params = {"$select": "contactId,name", "$orderBy": "contactId"}
    return [
        {"id": as_id(r.get("contactId")), "name": blank(r.get("name"))}
        for r in api.rows(ContactPages(params, origin=api.base))
    ]


def _mdo_list(api: WebApi, name: str) -> list[tuple[int, str]]:
    items = api.get_json(f"api/v1/MDOList/{name}", list)
    out: list[tuple[int, str]] = []

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            nid = as_id(get(node, "Id"))
            label = blank(get(node, "Name"))
            if nid is not None and nid > 0 and label:
                out.append((nid, label))
            walk(get(node, "ChildItems") or [])

    walk(items)
    return out
