"""What scimflow sends to a SCIM server and reads back: user attributes, computed groups, PATCH operations.

Users (ARCHITECTURE.md, SCIM target): ``userName`` = ``user_name``, ``externalId`` = the Entra object id,
``active``, ``name.givenName`` / ``name.familyName`` = ``first_name`` / ``last_name``, ``name.formatted`` =
both joined by a space, ``displayName`` = Entra ``displayName``, ``emails`` = one ``work`` entry, primary,
``title``, ``phoneNumbers`` = one ``mobile`` entry. Nothing is ever sent as null; a value that becomes empty
is removed.

Computed groups (names from :mod:`scimflow.computed_groups`): ``displayName`` = ``externalId`` =
``{group_prefix}:{element}:{value}``, created without members, then members added and removed in batches.

Two dialects (reference/scim-target.md §2): ``entra`` copies Entra's provisioning service (``Replace`` /
``Add`` / ``Remove``, ``"True"``/``"False"`` for ``active``, member removal with a value array), ``rfc``
follows RFC 7644 (lowercase ops, boolean ``active``, ``members[value eq "…"]`` removal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "ENTERPRISE_USER_URN",
    "ENTRA_GROUP_URN",
    "GROUP_URN",
    "PATCH_URN",
    "USER_FIELDS",
    "USER_URN",
    "Dialect",
    "escape_filter_value",
    "group_body",
    "member_patches",
    "patch_body",
    "user_body",
    "user_patch_ops",
    "user_values",
]

Dialect = Literal["entra", "rfc"]

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTRA_GROUP_URN = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

#: The user fields the SCIM writer sends, under the plan's field names (``entra_id`` is ``externalId``).
USER_FIELDS: tuple[str, ...] = (
    "user_name",
    "entra_id",
    "active",
    "first_name",
    "last_name",
    "display_name",
    "email",
    "title",
    "mobile_phone",
)

# plan field -> (entra-dialect path, path to remove it)
_PATHS: dict[str, tuple[str, str]] = {
    "user_name": ("userName", "userName"),
    "entra_id": ("externalId", "externalId"),
    "first_name": ("name.givenName", "name.givenName"),
    "last_name": ("name.familyName", "name.familyName"),
    "display_name": ("displayName", "displayName"),
    "email": ('emails[type eq "work"].value', 'emails[type eq "work"]'),
    "title": ("title", "title"),
    "mobile_phone": ('phoneNumbers[type eq "mobile"].value', 'phoneNumbers[type eq "mobile"]'),
}


def _text(value: Any) -> str | None:
    """A value as sent: a non-blank string, or ``None`` (never sent)."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def escape_filter_value(value: str) -> str:
    """``value`` as a quoted SCIM filter string (RFC 7644 §3.4.2.2: JSON string escaping)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _formatted(first: str | None, last: str | None) -> str | None:
    return " ".join(p for p in (first, last) if p) or None


def user_body(values: Mapping[str, Any], dialect: Dialect) -> dict[str, Any]:
    """The ``POST /Users`` body for a user with these plan values (no nulls; empty values left out).

    ``entra``: the shape Entra's provisioning service sends (core + enterprise schemas, ``meta``,
    ``roles: []``); ``rfc``: the core schema and the attributes alone.
    """
    first, last = _text(values.get("first_name")), _text(values.get("last_name"))
    body: dict[str, Any] = {"schemas": [USER_URN, ENTERPRISE_USER_URN] if dialect == "entra" else [USER_URN]}
    if (ext := _text(values.get("entra_id"))) is not None:
        body["externalId"] = ext
    body["userName"] = _text(values.get("user_name"))
    body["active"] = values.get("active") is not False
    if (display := _text(values.get("display_name"))) is not None:
        body["displayName"] = display
    if (email := _text(values.get("email"))) is not None:
        body["emails"] = [{"primary": True, "type": "work", "value": email}]
    if dialect == "entra":
        body["meta"] = {"resourceType": "User"}
    name = {
        k: v
        for k, v in (("formatted", _formatted(first, last)), ("familyName", last), ("givenName", first))
        if v is not None
    }
    if name:
        body["name"] = name
    if dialect == "entra":
        body["roles"] = []
    if (title := _text(values.get("title"))) is not None:
        body["title"] = title
    if (mobile := _text(values.get("mobile_phone"))) is not None:
        body["phoneNumbers"] = [{"type": "mobile", "value": mobile}]
    return body


def _active_value(active: bool, dialect: Dialect) -> bool | str:
    if dialect == "entra":
        return "True" if active else "False"
    return active


def user_patch_ops(changes: Mapping[str, Any], current: Mapping[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
    """The PATCH operations that set ``changes`` (``{plan field: new value}``) on a user now at ``current``.

    Only changed attributes are sent. ``name.formatted`` follows a first or last name change (from the new
    value and ``current``'s other part). An empty new value removes the attribute. ``entra`` writes the
    single-valued path of a multi-valued attribute (``emails[type eq "work"].value``) as Entra does; ``rfc``
    replaces ``emails`` / ``phoneNumbers`` with their one entry.
    """
    rep, rem = ("Replace", "Remove") if dialect == "entra" else ("replace", "remove")
    ops: list[dict[str, Any]] = []
    for field, new in changes.items():
        if field == "active":
            ops.append({"op": rep, "path": "active", "value": _active_value(new is not False, dialect)})
            continue
        if field not in _PATHS:
            continue
        value = _text(new)
        path, remove_path = _PATHS[field]
        if value is None:
            ops.append({"op": rem, "path": remove_path})
        elif dialect == "rfc" and field == "email":
            ops.append({"op": rep, "path": "emails", "value": [{"primary": True, "type": "work", "value": value}]})
        elif dialect == "rfc" and field == "mobile_phone":
            ops.append({"op": rep, "path": "phoneNumbers", "value": [{"type": "mobile", "value": value}]})
        else:
            ops.append({"op": rep, "path": path, "value": value})
    if "first_name" in changes or "last_name" in changes:
        first = _text(changes["first_name"] if "first_name" in changes else current.get("first_name"))
        last = _text(changes["last_name"] if "last_name" in changes else current.get("last_name"))
        formatted = _formatted(first, last)
        if formatted is None:
            ops.append({"op": rem, "path": "name.formatted"})
        else:
            ops.append({"op": rep, "path": "name.formatted", "value": formatted})
    return ops


def patch_body(ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A PatchOp message holding ``ops``."""
    return {"schemas": [PATCH_URN], "Operations": [dict(op) for op in ops]}


def group_body(name: str, dialect: Dialect) -> dict[str, Any]:
    """The ``POST /Groups`` body of a computed group: ``displayName`` = ``externalId`` = ``name``, no members."""
    if dialect == "entra":
        return {
            "schemas": [GROUP_URN, ENTRA_GROUP_URN],
            "externalId": name,
            "displayName": name,
            "meta": {"resourceType": "Group"},
        }
    return {"schemas": [GROUP_URN], "externalId": name, "displayName": name}


def member_patches(add: Iterable[str], remove: Iterable[str], dialect: Dialect, batch: int) -> list[dict[str, Any]]:
    """PatchOp bodies adding and removing these user ids, at most ``batch`` members per body.

    ``entra``: ``{"op":"Add","path":"members","value":[{"$ref":null,"value":id},…]}`` and
    ``{"op":"Remove","path":"members","value":[{"value":id},…]}``; ``rfc``: one ``add`` with a value array
    and one ``remove`` per member with the path ``members[value eq "id"]``.
    """
    bodies: list[dict[str, Any]] = []
    adds, removes = sorted(set(add)), sorted(set(remove))
    for i in range(0, len(adds), batch):
        part = adds[i : i + batch]
        if dialect == "entra":
            op: dict[str, Any] = {"op": "Add", "path": "members", "value": [{"$ref": None, "value": u} for u in part]}
        else:
            op = {"op": "add", "path": "members", "value": [{"value": u} for u in part]}
        bodies.append(patch_body([op]))
    for i in range(0, len(removes), batch):
        part = removes[i : i + batch]
        if dialect == "entra":
            bodies.append(patch_body([{"op": "Remove", "path": "members", "value": [{"value": u} for u in part]}]))
        else:
            bodies.append(
                patch_body([{"op": "remove", "path": f"members[value eq {escape_filter_value(u)}]"} for u in part])
            )
    return bodies


def _first(items: Any, kind: str) -> dict[str, Any] | None:
    """The entry of a multi-valued attribute of ``type`` ``kind`` (the primary one first), else the first."""
    entries = [e for e in items or () if isinstance(e, dict)]
    typed = [e for e in entries if str(e.get("type", "")).lower() == kind]
    pool = typed or entries
    pool.sort(key=lambda e: not e.get("primary"))
    return pool[0] if pool else None


def _active(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() != "false"
    return raw is not False


def user_values(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A SCIM user resource (a JSON object) under the plan's field names, plus ``id`` and ``version``."""
    name = resource.get("name") if isinstance(resource.get("name"), dict) else {}
    assert isinstance(name, dict)
    email = _first(resource.get("emails"), "work")
    phone = _first(resource.get("phoneNumbers"), "mobile")
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    return {
        "id": _text(resource.get("id")),
        "user_name": _text(resource.get("userName")),
        "entra_id": _text(resource.get("externalId")),
        "active": _active(resource.get("active", True)),
        "first_name": _text(name.get("givenName")),
        "last_name": _text(name.get("familyName")),
        "display_name": _text(resource.get("displayName")),
        "email": _text(email.get("value")) if email else None,
        "title": _text(resource.get("title")),
        "mobile_phone": _text(phone.get("value")) if phone else None,
        "version": _text(meta.get("version")),
    }
