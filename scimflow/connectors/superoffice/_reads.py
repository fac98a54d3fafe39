"""Bulk user reads into ``SO_SCHEMA`` frames (never one request per user).

Users come from the AllUsers archive (``GET /api/v1/User``, the one user read SuperOffice does not mark
Online-restricted), mobile phones from the person archive (``mobilePhone/formattedNumber`` is not an
AllUsers column) in ``personId oneOf`` chunks. See :mod:`scimflow.connectors.superoffice._target` for the
columns and how their values become frame values.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._pages import PersonPages, UserPages
from scimflow.connectors.superoffice._reference import Maps
from scimflow.connectors.superoffice._values import (
    BASE_COLUMNS,
    ID_CHUNK,
    MOBILE_COLUMN,
    USER_NAME_CHUNK,
    USER_TYPES,
    as_bool,
    as_id,
    blank,
    chunks,
    quote,
)
from scimflow.frames import CONFIDENTIAL_LICENSE, SO_SCHEMA, conform

__all__ = ["find_by_user_name", "find_by_user_names", "read_users", "read_users_by_id"]


def _columns(maps: Maps) -> str:
    licences = [*maps.plan_order, CONFIDENTIAL_LICENSE]
    return ",".join([*BASE_COLUMNS, *(f"superoffice_{lic}" for lic in dict.fromkeys(licences))])


def read_users(api: WebApi, maps: Maps) -> pl.DataFrame:
    """Every user (all types, retired included) as an ``SO_SCHEMA`` frame, ordered by associate id."""
    params = {"$select": _columns(maps), "$orderBy": "associateDbId"}
    return _frame(api, api.rows(UserPages(params, origin=api.base)), maps)


def read_users_by_id(api: WebApi, maps: Maps, ids: Sequence[int]) -> pl.DataFrame:
    """The given users (bulk ``associateDbId oneOf``, chunked); absent ids are absent."""
    wanted = sorted({int(i) for i in ids})
    rows: list[dict[str, Any]] = []
    for chunk in chunks(wanted, ID_CHUNK):
        params = {
            "$select": _columns(maps),
            "$orderBy": "associateDbId",
            "$filter": f"associateDbId oneOf({','.join(map(str, chunk))})",
        }
        rows.extend(api.rows(UserPages(params, origin=api.base, at_most=len(chunk))))
    return _frame(api, rows, maps)


def find_by_user_name(api: WebApi, maps: Maps, user_name: str) -> pl.DataFrame:
    """Users whose ``UserName`` equals ``user_name`` (trimmed, case-insensitive), any type."""
    key = user_name.strip()
    params = {"$select": _columns(maps), "$filter": f"userName eq {quote(key)}"}
    rows = [
        r
        for r in api.rows(UserPages(params, origin=api.base))
        if str(r.get("userName") or "").strip().casefold() == key.casefold()
    ]
    return _frame(api, rows, maps)


def find_by_user_names(api: WebApi, user_names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Users holding any of ``user_names`` (``userName oneOf``, batches read a few in parallel).

    Returns ``{casefolded trimmed UserName: [{"associate_id", "user_type"}, ...]}`` for the names found.
    """
    keys = sorted({str(n).strip() for n in user_names if n and str(n).strip()}, key=str.casefold)

    def one(batch: list[str]) -> list[dict[str, Any]]:
        params = {
            "$select": "associateDbId,userName,assocType",
            "$filter": f"userName oneOf({','.join(quote(k) for k in batch)})",
        }
        return api.rows(UserPages(params, origin=api.base, at_most=len(batch)))

    batches = [keys[i : i + USER_NAME_CHUNK] for i in range(0, len(keys), USER_NAME_CHUNK)]
    wanted = {k.casefold() for k in keys}
    out: dict[str, list[dict[str, Any]]] = {}
    if not batches:
        return out
    with ThreadPoolExecutor(max_workers=min(4, len(batches)), thread_name_prefix="so-names") as pool:
        for rows in pool.map(one, batches):
            for r in rows:
                name = str(r.get("userName") or "").strip().casefold()
                if name not in wanted:
                    continue
                raw_type = str(r.get("assocType") or "").strip()
                out.setdefault(name, []).append(
                    {
                        "associate_id": as_id(r.get("associateDbId")),
                        "user_type": USER_TYPES.get(raw_type, raw_type or None),
                    }
                )
    return out


def _mobiles(api: WebApi, person_ids: list[int]) -> dict[int, str | None]:
    """Mobile phones by person id, through the person archive in ``oneOf`` chunks (a few in parallel)."""

    def one(chunk: list[int]) -> list[dict[str, Any]]:
        params = {"$select": f"personId,{MOBILE_COLUMN}", "$filter": f"personId oneOf({','.join(map(str, chunk))})"}
        return api.rows(PersonPages(params, origin=api.base, at_most=len(chunk)))

    out: dict[int, str | None] = {}
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="so-persons") as pool:
        for rows in pool.map(one, list(chunks(sorted(set(person_ids)), ID_CHUNK))):
            for r in rows:
                pid = as_id(r.get("personId"))
                if pid is not None:
                    out[pid] = blank(r.get(MOBILE_COLUMN))
    return out


def _frame(api: WebApi, rows: list[dict[str, Any]], maps: Maps) -> pl.DataFrame:
    person_ids = [pid for r in rows if (pid := as_id(r.get("personId"))) is not None]
    mobiles = _mobiles(api, person_ids) if person_ids else {}
    cols: dict[str, list[Any]] = {name: [] for name in SO_SCHEMA.names()}
    licences = [*maps.plan_order, CONFIDENTIAL_LICENSE]
    for r in rows:
        assigned = {lic: as_bool(r.get(f"superoffice_{lic}")) for lic in licences}
        pid = as_id(r.get("personId"))
        raw_type = str(r.get("assocType") or "").strip()
        others = str(r.get("otherGroups") or "")
        values = {
            "associate_id": as_id(r.get("associateDbId")),
            "name": blank(r.get("assocName")),
            "user_name": blank(r.get("userName")),
            "user_type": USER_TYPES.get(raw_type, raw_type or None),
            "retired": not as_bool(r.get("isActive")),
            "person_id": pid,
            "first_name": blank(r.get("firstName")),
            "last_name": blank(r.get("lastName")),
            "email": blank(r.get("personEmail")),
            "title": blank(r.get("title")),
            "mobile_phone": mobiles.get(pid) if pid is not None else None,
            "role": blank(r.get("role")),
            "primary_group": blank(r.get("usergroup")),
            "secondary_groups": [g.strip() for g in others.split(",") if g.strip()],
            "owner_company": blank(r.get("contactName")),
            "contact_id": as_id(r.get("contactId")),
            "user_plan": maps.plan_of(assigned),
            "confidential": assigned[CONFIDENTIAL_LICENSE],
        }
        for name, value in values.items():
            cols[name].append(value)
    frame = pl.DataFrame(cols, schema=SO_SCHEMA)
    return conform(frame.sort("associate_id"), SO_SCHEMA)
