"""JSON Patch operations of a user update, built once for both update paths.

Every write is a ``replace`` (or ``add``/``remove`` on a person collection) preceded by a ``test`` of the
value the writer believes is there, so a change racing the write answers 409 (:class:`ConflictError`).
The fast path (:func:`scimflow.connectors.superoffice._updates.fast_update`) takes its test values from
the engine's bulk read; the read-first path from ``GET User/{id}``: :class:`UserState` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scimflow.connectors.errors import PayloadError
from scimflow.connectors.superoffice._reference import Maps, ref_obj
from scimflow.connectors.superoffice._values import PERSON_LISTS, PERSON_SCALARS, USER_OBJECTS, as_id, blank, get
from scimflow.frames import CONFIDENTIAL_LICENSE, NO_PLAN_LICENSE

__all__ = ["UserState", "person_ops", "user_ops"]

Ops = list[dict[str, Any]]


@dataclass(frozen=True)
class UserState:
    """The values the ``test`` ops of a ``PATCH User/{id}`` compare with.

    ``objects`` maps ``role`` / ``primary_group`` to the (path, value) tested: ``/Role/Id`` and the id from
    a bulk read, or ``/Role`` and the whole object from a ``GET``. ``other_groups`` and ``licences`` (name →
    (pointer of ``Assigned``, value)) are known only after a ``GET``.
    """

    user_name: Any
    objects: dict[str, tuple[str, Any]]
    other_groups: list[Any] = field(default_factory=list)
    licences: dict[str, tuple[str, bool]] = field(default_factory=dict)


def _test_replace(path: str, was: Any, to: Any) -> Ops:
    return [{"op": "test", "path": path, "value": was}, {"op": "replace", "path": path, "value": to}]


def user_ops(changes: dict[str, dict[str, Any]], maps: Maps, state: UserState, *, associate_id: int) -> Ops:
    """JSON Patch for ``PATCH /api/v1/User/{id}``: user name, role, groups, then plan/confidential licences.

    A plan change assigns the plan licence and unassigns the other plan licences; ``user_plan`` → ``None``
    assigns ``superlicense-no-selection``. A licence to assign that the user cannot have is a
    :class:`PayloadError`.
    """
    ops: Ops = []
    if "user_name" in changes:
        ops += _test_replace("/UserName", state.user_name, blank(changes["user_name"].get("to")))
    for element, key in USER_OBJECTS.items():
        if element in changes:
            path, was = state.objects[element]
            ops += [
                {"op": "test", "path": path, "value": was},
                {"op": "replace", "path": f"/{key}", "value": ref_obj(maps, element, changes[element].get("to"))},
            ]
    if "secondary_groups" in changes:
        groups = [ref_obj(maps, "secondary_groups", g) for g in sorted(changes["secondary_groups"].get("to") or [])]
        ops += _test_replace("/OtherGroups", state.other_groups, groups)
    wanted: dict[str, bool] = {}
    if "user_plan" in changes:
        to = changes["user_plan"].get("to")
        target = NO_PLAN_LICENSE if to is None else maps.resolve("user_plan", to)
        wanted.update({lic: lic == target for lic in maps.plan_order if lic in state.licences or lic == target})
    if "confidential" in changes:
        wanted[CONFIDENTIAL_LICENSE] = bool(changes["confidential"].get("to"))
    for name, on in wanted.items():
        if name not in state.licences:
            if on:
                raise PayloadError(f"update: the licence {name!r} is not available to user {associate_id}")
            continue
        path, was = state.licences[name]
        if was != on:
            ops += _test_replace(path, was, on)
    return ops


def person_ops(changes: dict[str, dict[str, Any]], person: dict[str, Any], maps: Maps) -> Ops:
    """JSON Patch for ``PATCH /api/v1/Person/{id}`` (PersonEntity paths), a ``test`` before every write.

    ``person`` holds the User carrier's person keys (``Firstname``, ``Email``, ``ContactId``, …) as read.
    """
    ops: Ops = []
    for element, key in PERSON_SCALARS.items():
        if element in changes:
            ops += _test_replace(f"/{key}", get(person, key), blank(changes[element].get("to")) or "")
    for element, (collection, carrier_key) in PERSON_LISTS.items():
        if element not in changes:
            continue
        was, to = blank(get(person, carrier_key)), blank(changes[element].get("to"))
        if was is None:
            ops.append({"op": "test", "path": f"/{collection}", "value": []})
            if to is not None:
                ops.append({"op": "add", "path": f"/{collection}/-", "value": {"Value": to}})
        else:
            ops.append({"op": "test", "path": f"/{collection}/0/Value", "value": get(person, carrier_key)})
            ops.append(
                {"op": "remove", "path": f"/{collection}/0"}
                if to is None
                else {"op": "replace", "path": f"/{collection}/0/Value", "value": to}
            )
    if "owner_company" in changes:
        to = changes["owner_company"].get("to")
        contact_id = as_id(get(person, "ContactId"))
        ops.append(
            {"op": "test", "path": "/Contact/ContactId", "value": contact_id}
            if contact_id
            else {"op": "test", "path": "/Contact", "value": None}
        )
        ops.append(
            {
                "op": "replace",
                "path": "/Contact",
                "value": {"ContactId": int(maps.resolve("owner_company", to))} if to else None,
            }
        )
    return ops
