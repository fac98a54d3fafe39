"""Creating an internal user: the person first, then the user from the ``User/Default`` template.

Idempotent on ``UserName``: an internal user holding it is the result of an earlier attempt and is returned
as is; any other user type is a :class:`PayloadError`. When an earlier attempt may have been interrupted
between the person and the user (``retry=True``), a person it left behind (same e-mail — or first+last name
without one — under the same contact, not yet a user) is reused. A ``Name`` taken meanwhile is refused with
``DuplicateName`` and retried with the next number.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from typing import Any

from scimflow.connectors.errors import PayloadError, UpstreamError
from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._names import NameBook
from scimflow.connectors.superoffice._pages import PersonPages, UserPages
from scimflow.connectors.superoffice._reads import find_by_user_names
from scimflow.connectors.superoffice._reference import TEMPLATE_PARAMS, Maps, ref_obj
from scimflow.connectors.superoffice._values import PLAN_FIELDS, as_id, blank, get, quote
from scimflow.frames import CONFIDENTIAL_LICENSE

__all__ = ["CREATE_REQUESTS", "Template", "create_user", "licence_paths"]

log = logging.getLogger("scimflow.superoffice")

#: What a create sends when its ``UserName`` is free and no earlier attempt left a person: :func:`_create_person`
#: then :func:`_post_user` (a ``DuplicateName`` answer adds a ``POST api/v1/User``; the cost of a plan counts these).
CREATE_REQUESTS = ("POST api/v1/Person", "POST api/v1/User")

#: Attempts at a free ``Name`` before a create gives up.
NAME_ATTEMPTS = 5


class Template:
    """The ``User/Default`` template of an internal user, read once per target (thread-safe)."""

    def __init__(self, api: WebApi) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._template: dict[str, Any] | None = None

    def keep(self, template: dict[str, Any]) -> None:
        """Keep a copy of a template read elsewhere (with the reference lists)."""
        with self._lock:
            self._template = copy.deepcopy(template)

    def copy(self) -> dict[str, Any]:
        """A copy of the template (no person), read now if it has not been."""
        with self._lock:
            if self._template is None:
                self._template = self._api.get_json("api/v1/User/Default", params=TEMPLATE_PARAMS)
            return copy.deepcopy(self._template)


def licence_paths(carrier: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Licence name → (JSON Pointer of its ``Assigned``, current value) in a User carrier."""
    out: dict[str, tuple[str, bool]] = {}
    for i, owner in enumerate(get(carrier, "LicenseOwners") or []):
        for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
            for j, lic in enumerate(get(owner, kind) or []):
                name = str(get(lic, "Name"))
                out.setdefault(name, (f"/LicenseOwners/{i}/{kind}/{j}/Assigned", bool(get(lic, "Assigned"))))
    return out


def _set_licences(carrier: dict[str, Any], wanted: dict[str, bool]) -> None:
    paths = licence_paths(carrier)
    for name, on in wanted.items():
        if name not in paths:
            if on:
                raise PayloadError(f"the licence {name!r} is not available to this user")
            continue
        _, _, i, kind, j, _ = paths[name][0].split("/")
        carrier["LicenseOwners"][int(i)][kind][int(j)]["Assigned"] = on


def create_user(
    api: WebApi,
    maps: Maps,
    fields: dict[str, Any],
    *,
    template: Template,
    names: NameBook,
    retry: bool,
    existing: Sequence[dict[str, Any]] | None,
) -> int:
    """Create an internal user (person first) and return its AssociateId (see the module docstring)."""
    unknown = set(fields) - PLAN_FIELDS
    if unknown:
        raise PayloadError(f"create: unknown fields {sorted(unknown)}")
    user_name = blank(fields.get("user_name"))
    if not user_name:
        raise PayloadError("create: user_name is required")
    role = ref_obj(maps, "role", fields.get("role"))
    group = ref_obj(maps, "primary_group", fields.get("primary_group"))
    others = [ref_obj(maps, "secondary_groups", g) for g in sorted(fields.get("secondary_groups") or [])]
    company = fields.get("owner_company")
    contact_id = int(maps.resolve("owner_company", company)) if company else None
    plan = fields.get("user_plan")
    plan_licence = maps.resolve("user_plan", plan) if plan else None

    if existing is None:
        existing = find_by_user_names(api, [user_name]).get(user_name.casefold(), [])
    if existing:
        kinds = sorted({str(u.get("user_type")) for u in existing if u.get("user_type") != "InternalAssociate"})
        if kinds:
            raise PayloadError(
                f"create: the UserName is already used by a {'/'.join(kinds) or 'non-internal'} "
                "user; scimflow never takes over system, external or resource users"
            )
        aid = int(existing[0]["associate_id"])
        log.info("create: UserName already exists as internal user %d; treating the create as done", aid)
        return aid

    carrier = template.copy()  # checks the licences before anything is written
    carrier["UserName"] = user_name
    if role is not None:
        carrier["Role"] = role
    if group is not None:
        carrier["UserGroup"] = group
    carrier["OtherGroups"] = others
    wanted = {CONFIDENTIAL_LICENSE: bool(fields.get("confidential"))}
    if plan_licence is not None:
        wanted.update({lic: lic == plan_licence for lic in maps.plan_order})
    _set_licences(carrier, wanted)

    orphan = _find_orphan_person(api, fields, contact_id) if retry else None
    person_id = orphan or _create_person(api, fields, contact_id)
    carrier["Person"] = {
        "PersonId": person_id,
        "Firstname": blank(fields.get("first_name")) or "",
        "Lastname": blank(fields.get("last_name")) or "",
        "Email": blank(fields.get("email")) or "",
        "Title": blank(fields.get("title")) or "",
        "MobilePhone": blank(fields.get("mobile_phone")) or "",
        "ContactId": contact_id or 0,
    }
    return _post_user(api, carrier, fields, names)


def _post_user(api: WebApi, carrier: dict[str, Any], fields: dict[str, Any], names: NameBook) -> int:
    """``POST /api/v1/User`` with a free ``Name``, the next one after each ``DuplicateName``."""
    for _ in range(NAME_ATTEMPTS):
        carrier["Name"] = names.claim(fields.get("first_name"), fields.get("last_name"))
        response = api.send("POST", "api/v1/User", json=carrier, ok=frozenset({400}))
        if response.status_code < 300:
            created = as_id(get(api.json(response), "AssociateId"))
            if created is None:
                raise PayloadError(
                    "create: the created user has no AssociateId", method="POST", url=response.request.url
                )
            log.debug("created SuperOffice user %d", created)
            return created
        err = api.json(response)
        if str(err.get("ErrorType")) != "DuplicateName":
            raise UpstreamError(
                f"create refused: {str(err.get('Error') or '')[:200]}",
                method="POST",
                url=response.request.url,
                status=400,
            )
    raise UpstreamError(f"create: could not find a free User ID (Name) after {NAME_ATTEMPTS} attempts")


def _find_orphan_person(api: WebApi, fields: dict[str, Any], contact_id: int | None) -> int | None:
    """A person an earlier, interrupted create left behind: same e-mail (or name) and contact, not a user."""
    email = blank(fields.get("email"))
    first, last = blank(fields.get("first_name")), blank(fields.get("last_name"))
    if email:
        clauses = [f"email/emailAddress eq {quote(email)}"]
    elif first and last:
        clauses = [f"firstName eq {quote(first)}", f"lastName eq {quote(last)}"]
    else:
        return None
    clauses.append(f"contactId eq {contact_id or 0}")
    params = {
        "$select": "personId,firstName,lastName,email/emailAddress,contactId",
        "$filter": " and ".join(clauses),
        "$orderBy": "personId",
    }
    candidates = [
        pid
        for r in api.rows(PersonPages(params, origin=api.base))
        if (pid := as_id(r.get("personId"))) is not None
        and str(blank(r.get("firstName")) or "").casefold() == str(first or "").casefold()
        and str(blank(r.get("lastName")) or "").casefold() == str(last or "").casefold()
    ]
    if not candidates:
        return None
    params = {"$select": "associateDbId,personId", "$filter": f"personId oneOf({','.join(map(str, candidates))})"}
    users = {as_id(r.get("personId")) for r in api.rows(UserPages(params, origin=api.base))}
    free = [pid for pid in candidates if pid not in users]
    if free:
        log.info("create: reusing person %d left by an earlier attempt", free[0])
        return free[0]
    return None


def _create_person(api: WebApi, fields: dict[str, Any], contact_id: int | None) -> int:
    body: dict[str, Any] = {
        "Firstname": blank(fields.get("first_name")) or "",
        "Lastname": blank(fields.get("last_name")) or "",
        "Title": blank(fields.get("title")) or "",
        "Emails": [{"Value": e}] if (e := blank(fields.get("email"))) else [],
        "MobilePhones": [{"Value": m}] if (m := blank(fields.get("mobile_phone"))) else [],
        "Contact": {"ContactId": contact_id} if contact_id else None,
    }
    response = api.send("POST", "api/v1/Person", json=body)
    pid = as_id(get(api.json(response), "PersonId"))
    if pid is None:
        raise PayloadError("create: the created person has no PersonId", method="POST", url=response.request.url)
    return pid
