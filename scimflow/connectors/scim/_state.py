"""Reading the SCIM side into frames for planning: users, and their computed-group memberships.

Users frame (:data:`SCIM_USERS_SCHEMA`, one row per SCIM user): ``partner_id`` (the SCIM ``id``, a string),
the user's attributes under the plan's field names (``user_name``, ``entra_id`` = ``externalId``,
``active``, ``retired`` = not active, ``first_name``, ``last_name``, ``display_name``, ``email``, ``title``,
``mobile_phone``), the element values read back from the user's computed groups (``role``,
``primary_group``, ``secondary_groups``, ``owner_company``, ``user_plan``, ``confidential``), ``groups``
(every computed group the user is a member of, by name) and ``version`` (``meta.version``).

Groups frame (:data:`SCIM_GROUPS_SCHEMA`, one row per computed group, other groups left out):
``partner_id`` (group id), ``display_name``, ``external_id``, ``element``, ``value``, ``members``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from scimflow.computed_groups import parse_group_name, values_from_groups
from scimflow.connectors.errors import NotFoundError
from scimflow.connectors.scim._client import ListingRefusedError, ScimClient
from scimflow.connectors.scim._mapping import user_values

__all__ = ["SCIM_GROUPS_SCHEMA", "SCIM_USERS_SCHEMA", "read_scim_state"]

SCIM_USERS_SCHEMA: pl.Schema = pl.Schema(
    {
        "partner_id": pl.String(),
        "user_name": pl.String(),
        "entra_id": pl.String(),
        "active": pl.Boolean(),
        "retired": pl.Boolean(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "display_name": pl.String(),
        "email": pl.String(),
        "title": pl.String(),
        "mobile_phone": pl.String(),
        "role": pl.String(),
        "primary_group": pl.String(),
        "secondary_groups": pl.List(pl.String),
        "owner_company": pl.String(),
        "user_plan": pl.String(),
        "confidential": pl.Boolean(),
        "groups": pl.List(pl.String),
        "version": pl.String(),
    }
)

SCIM_GROUPS_SCHEMA: pl.Schema = pl.Schema(
    {
        "partner_id": pl.String(),
        "display_name": pl.String(),
        "external_id": pl.String(),
        "element": pl.String(),
        "value": pl.String(),
        "members": pl.List(pl.String),
    }
)


def _groups_by_lookup(client: ScimClient, names: Iterable[str], workers: int) -> list[dict[str, Any]]:
    def one(name: str) -> dict[str, Any] | None:
        found = client.find_group(name)
        if found is None:
            return None
        return client.get_group(str(found["id"]))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [g for g in pool.map(one, sorted(set(names))) if g is not None]


def _users_by_lookup(
    client: ScimClient,
    ids: Iterable[str],
    keys: Iterable[tuple[str | None, str | None]],
    workers: int,
) -> list[dict[str, Any]]:
    def by_id(user_id: str) -> dict[str, Any] | None:
        try:
            return client.get_user(user_id)
        except NotFoundError:
            return None

    def by_key(key: tuple[str | None, str | None]) -> dict[str, Any] | None:
        return client.find_user(user_name=key[0], external_id=key[1])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = [u for u in pool.map(by_id, sorted(set(ids))) if u is not None]
        seen = {u.get("id") for u in found}
        for user in pool.map(by_key, list(dict.fromkeys(keys))):
            if user is not None and user.get("id") not in seen:
                seen.add(user.get("id"))
                found.append(user)
    return found


def read_scim_state(
    client: ScimClient,
    *,
    group_prefix: str | None = None,
    ids: Iterable[str] = (),
    users: Iterable[tuple[str | None, str | None]] = (),
    group_names: Iterable[str] = (),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The SCIM users (with their computed-group element values) and the computed groups, as frames.

    Lists ``/Users`` and ``/Groups`` paged. Where the server refuses listing, users are looked up one by one
    instead: by stored id (``ids``: the links' SCIM ids) and by ``(userName, externalId)`` pairs (``users``:
    the Entra users in scope, ``userName eq`` then ``externalId eq``), and groups by ``displayName eq`` for
    each of ``group_names`` (every computed group the rules can give). ``group_prefix`` defaults to the
    client's config.
    """
    prefix = group_prefix or client.config.group_prefix
    workers = client.config.write_concurrency
    try:
        raw_groups = client.list_groups()
    except ListingRefusedError:
        raw_groups = _groups_by_lookup(client, group_names, workers)
    try:
        raw_users = client.list_users()
    except ListingRefusedError:
        raw_users = _users_by_lookup(client, ids, users, workers)

    group_rows: list[dict[str, Any]] = []
    member_of: dict[str, list[str]] = defaultdict(list)
    for g in raw_groups:
        name = str(g.get("displayName") or "")
        parsed = parse_group_name(prefix, name)
        if parsed is None or not g.get("id"):
            continue
        members = sorted({str(m["value"]) for m in g.get("members") or () if isinstance(m, dict) and m.get("value")})
        for member in members:
            member_of[member].append(name)
        group_rows.append(
            {
                "partner_id": str(g["id"]),
                "display_name": name,
                "external_id": g.get("externalId"),
                "element": parsed[0],
                "value": name.split(":", 2)[2],
                "members": members,
            }
        )

    user_rows: list[dict[str, Any]] = []
    for raw in raw_users:
        values = user_values(raw)
        if values["id"] is None:
            continue
        names = sorted(member_of.get(values["id"], []))
        user_rows.append(
            {
                "partner_id": values["id"],
                **{k: values[k] for k in values if k not in ("id",)},
                "retired": not values["active"],
                **values_from_groups(prefix, names),
                "groups": names,
            }
        )
    users_frame = (
        pl.DataFrame(user_rows, schema=SCIM_USERS_SCHEMA) if user_rows else pl.DataFrame(schema=SCIM_USERS_SCHEMA)
    )
    groups_frame = (
        pl.DataFrame(group_rows, schema=SCIM_GROUPS_SCHEMA) if group_rows else pl.DataFrame(schema=SCIM_GROUPS_SCHEMA)
    )
    return users_frame.sort("partner_id"), groups_frame.sort("display_name")
