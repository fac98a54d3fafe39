"""User updates with drift checks, and retire / reactivate (``POST /api/v1/Agents/User/MakeRetired``).

Two paths write the same JSON Patch (:mod:`scimflow.connectors.superoffice._patch`):

- :func:`fast_update`, given the engine's bulk-read record, patches person fields, ``user_name``, role and
  primary group straight away with ``test`` ops of the values that read returned (no ``GET``); a failed
  test falls back to the path below.
- :func:`update_read_first`: ``GET User/{id}``, every ``from`` compared with it (:func:`same`) — a mismatch
  is a :class:`ConflictError` before anything is written —, then ``PATCH User/{id}`` and
  ``PATCH Person/{id}`` with ``test`` ops of the values read. An ``active`` change is done with MakeRetired
  (reactivate before the other changes, retire after them).
"""

from __future__ import annotations

import logging
from typing import Any

from scimflow.connectors.errors import ConflictError, PayloadError
from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._creates import licence_paths
from scimflow.connectors.superoffice._patch import UserState, person_ops, user_ops
from scimflow.connectors.superoffice._reference import Maps
from scimflow.connectors.superoffice._values import (
    FAST_FIELDS,
    PERSON_FIELDS,
    PERSON_SCALARS,
    USER_FIELDS,
    USER_OBJECTS,
    as_id,
    blank,
    get,
    has,
)
from scimflow.frames import CONFIDENTIAL_LICENSE
from scimflow.vocab import same_value

__all__ = [
    "MAKE_RETIRED",
    "EmptyStrings",
    "fast_update",
    "reactivate",
    "retire",
    "same",
    "update_read_first",
    "update_requests",
]

log = logging.getLogger("scimflow.superoffice")

#: The endpoint of :func:`retire` and :func:`reactivate` (the cost of a plan counts requests by endpoint).
MAKE_RETIRED = "POST api/v1/Agents/User/MakeRetired"
_GET_USER, _PATCH_USER, _PATCH_PERSON = "GET api/v1/User/{id}", "PATCH api/v1/User/{id}", "PATCH api/v1/Person/{id}"

#: How this server writes an empty person string (``None`` or ``""``; JSON Patch ``test`` tells them apart),
#: per PersonEntity key, as seen in the first entity read that had one empty.
EmptyStrings = dict[str, Any]


def same(field: str, now: Any, before: Any) -> bool:
    """Whether a field's value read now equals the plan's ``from``: :func:`scimflow.vocab.same_value`.

    Flags compare as booleans (an entity's missing flag is false) and every text is trimmed first, as
    the archive values the plan was made from were (``_reads`` trims each value it reads).
    """
    if field in ("confidential", "active"):
        return bool(now) == bool(before)
    return same_value(field, blank(now), blank(before))


def fast_update(
    api: WebApi,
    maps: Maps,
    associate_id: int,
    changes: dict[str, dict[str, Any]],
    current: dict[str, Any],
    empty_as: EmptyStrings,
) -> bool:
    """Write ``changes`` guarded by ``test`` ops built from ``current``; False when it cannot (caller reads first).

    Only fields whose entity value follows from the archive value take this path (person scalars, e-mail,
    mobile, owner company, user name; role and primary group, tested by ``Id``). An empty e-mail, mobile or
    owner company tests as an empty collection or a null contact; an empty name or title tests as this
    server writes an empty string (``empty_as``), once an entity read has shown it, and reads first until then.
    """
    if not set(changes) <= FAST_FIELDS:
        return False
    person = {
        "Firstname": current.get("first_name"),
        "Lastname": current.get("last_name"),
        "Title": current.get("title"),
        "Email": current.get("email"),
        "MobilePhone": current.get("mobile_phone"),
        "ContactId": current.get("contact_id"),
    }
    for field, change in changes.items():
        if field == "user_name":
            if blank(current.get(field)) is None or blank(change.get("from")) is None:
                return False
        elif field in USER_OBJECTS and (current.get(field) not in maps.table(field) or change.get("to") is None):
            return False
        elif field in PERSON_SCALARS and blank(current.get(field)) is None:
            key = PERSON_SCALARS[field]
            if key not in empty_as:
                return False
            person[key] = empty_as[key]
    person_id = as_id(current.get("person_id"))
    if set(changes) & PERSON_FIELDS and person_id is None:
        return False
    state = UserState(
        user_name=current.get("user_name"),
        objects={
            field: (f"/{key}/Id", int(maps.resolve(field, current.get(field))))
            for field, key in USER_OBJECTS.items()
            if field in changes
        },
    )
    users = user_ops(changes, maps, state, associate_id=associate_id)
    persons = person_ops(changes, person, maps)
    person_changes = {f: c for f, c in changes.items() if f in PERSON_FIELDS}
    if users:
        try:
            api.patch(f"api/v1/User/{int(associate_id)}", users)
        except ConflictError:
            update_read_first(api, maps, associate_id, changes, empty_as)
            return True
    if persons:
        try:
            api.patch(f"api/v1/Person/{person_id}", persons)
        except ConflictError:
            update_read_first(api, maps, associate_id, person_changes, empty_as)
            return True
    log.debug("updated SuperOffice user %d (%s)", associate_id, ", ".join(sorted(changes)))
    return True


def update_requests(changes: dict[str, dict[str, Any]], *, fast: bool, empty_known: set[str]) -> list[str]:
    """The requests an update of ``changes`` sends, the user being at the ``from`` values (no drift): the
    endpoints of :func:`fast_update` (``fast``: the engine's record is given) or else :func:`update_read_first`.

    ``empty_known`` holds the person keys whose empty value the writer has learnt (``EmptyStrings``); a read
    first adds the keys of the ``from`` values it sees empty, as :func:`update_read_first` does.
    """
    if not changes:
        return []
    blanks = {PERSON_SCALARS[f] for f, c in changes.items() if f in PERSON_SCALARS and blank(c.get("from")) is None}
    read_first = (
        not fast
        or not set(changes) <= FAST_FIELDS
        or ("user_name" in changes and blank(changes["user_name"].get("from")) is None)
        or any(f in changes and (changes[f].get("to") is None or changes[f].get("from") is None) for f in USER_OBJECTS)
        or not blanks <= empty_known
    )
    sent = [_GET_USER] if read_first else []
    if read_first:
        empty_known |= blanks
    if set(changes) & (USER_FIELDS if read_first else {"user_name", *USER_OBJECTS}):
        sent.append(_PATCH_USER)
    if set(changes) & PERSON_FIELDS:
        sent.append(_PATCH_PERSON)
    return sent


def update_read_first(
    api: WebApi, maps: Maps, associate_id: int, changes: dict[str, dict[str, Any]], empty_as: EmptyStrings
) -> None:
    """``GET User/{id}``, compare every ``from``, then PATCH with ``test`` ops of the values read."""
    url = f"api/v1/User/{int(associate_id)}"
    current = api.get_json(url)
    person = get(current, "Person") or {}
    for key in PERSON_SCALARS.values():
        value = get(person, key)
        if value in (None, "") and key not in empty_as and has(person, key):
            empty_as[key] = value
    licences = licence_paths(current)
    assigned = {name: on for name, (_, on) in licences.items()}
    now = {
        "user_name": get(current, "UserName"),
        "role": get(get(current, "Role"), "Value"),
        "primary_group": get(get(current, "UserGroup"), "Value"),
        "secondary_groups": sorted(str(get(g, "Value")) for g in get(current, "OtherGroups") or []),
        "user_plan": maps.plan_of(assigned),
        "confidential": assigned.get(CONFIDENTIAL_LICENSE, False),
        "first_name": get(person, "Firstname"),
        "last_name": get(person, "Lastname"),
        "email": get(person, "Email"),
        "title": get(person, "Title"),
        "mobile_phone": get(person, "MobilePhone"),
        "owner_company": maps.company_names.get(as_id(get(person, "ContactId"))),
        "active": not bool(get(current, "Deleted")),
    }
    for field, change in changes.items():
        if not same(field, now[field], change.get("from")):
            raise ConflictError(
                f"drift: {field} of user {associate_id} changed since the plan was made",
                method="GET",
                url=api.base + "/" + url,
            )

    state = UserState(
        user_name=now["user_name"],
        objects={field: (f"/{key}", get(current, key)) for field, key in USER_OBJECTS.items()},
        other_groups=get(current, "OtherGroups") or [],
        licences=licences,
    )
    users = user_ops(changes, maps, state, associate_id=associate_id)
    persons = person_ops(changes, person, maps)
    person_id = as_id(get(person, "PersonId"))
    if persons and person_id is None:
        raise PayloadError(f"update: user {associate_id} has no person to change")

    active = changes.get("active")
    if active is not None and active.get("to") is True and now["active"] is False:
        reactivate(api, associate_id)
    if users:
        api.patch(url, users)
    if persons:
        api.patch(f"api/v1/Person/{person_id}", persons)
    if active is not None and active.get("to") is False and now["active"] is True:
        retire(api, associate_id)
    log.debug("updated SuperOffice user %d (%s)", associate_id, ", ".join(sorted(changes)))


def retire(api: WebApi, associate_id: int) -> None:
    """Retire: MakeRetired removes the licences, marks the user ``Deleted`` and the person retired."""
    api.send("POST", MAKE_RETIRED.split()[1], json={"AssociateId": int(associate_id), "Retired": True})
    log.debug("retired SuperOffice user %d", associate_id)


def reactivate(api: WebApi, associate_id: int) -> None:
    """Un-retire (``Retired: false``); licences are not restored here: the plan's update re-applies them."""
    api.send("POST", MAKE_RETIRED.split()[1], json={"AssociateId": int(associate_id), "Retired": False})
    log.debug("reactivated SuperOffice user %d", associate_id)
