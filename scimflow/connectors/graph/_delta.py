"""Delta bookkeeping: what a users/groups delta round says, and how it is applied to a baseline frame.

Pure functions over Polars frames and plain dicts; the HTTP side is in :mod:`._source`.

How a round is folded (Graph allows replays and any order within a round, reference/graph.md §2):

- users: items are folded in order into ``updates`` (id → the properties seen, later ones win) and
  ``removed`` (ids whose *last* item carried ``@removed``; a later plain item means restored). With
  ``Prefer: return=minimal`` an item holds exactly the changed properties, a cleared one as ``null``, so
  merging "keys present win, absent keys keep the baseline" is exact.
- groups: ``@removed`` groups are deleted; any ``members@delta`` (also a slice of a large group repeated
  on later pages) marks the group's membership changed; a ``displayName`` renames it.

Applying memberships never trusts ``members@delta`` for the *transitive* picture (a member added to a
nested group changes every ancestor's transitive members, which Graph does not report). Instead the
source re-reads ``transitiveMembers`` of each changed group and of its ancestors
(``/groups/{id}/transitiveMemberOf``): a handful of requests for a handful of changes.
:func:`rebuild_memberships` then swaps those groups' edges in the baseline's exploded edges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from scimflow.frames import ENTRA_SCHEMA, GRAPH_USER_FIELDS, conform

__all__ = [
    "EDGE_SCHEMA",
    "NAME_SCHEMA",
    "USER_SCHEMA",
    "DeltaLinks",
    "DeltaResult",
    "GroupChanges",
    "UserChanges",
    "attach_memberships",
    "baseline_edges",
    "baseline_names",
    "fold_groups",
    "fold_users",
    "merge_users",
    "rebuild_memberships",
]

USER_SCHEMA = pl.Schema({k: v for k, v in ENTRA_SCHEMA.items() if k not in ("groups", "group_ids")})
EDGE_SCHEMA = pl.Schema({"id": pl.String, "group_id": pl.String})
NAME_SCHEMA = pl.Schema({"group_id": pl.String, "group_name": pl.String})
_USER_FIELDS = frozenset(GRAPH_USER_FIELDS)


@dataclass
class DeltaLinks:
    """The two delta links to keep after a successful run (absolute URLs holding ``$deltatoken``)."""

    users: str
    groups: str


@dataclass
class DeltaResult:
    """The tenant after a delta read, and what to store for the next one."""

    frame: pl.DataFrame  # the whole tenant after applying the delta (ENTRA_SCHEMA)
    links: DeltaLinks  # new delta links to store after a successful run
    full_read: bool  # True when this was a full (initial or recovery) read
    removed: list[str]  # ids reported @removed
    requests: int
    note: str | None  # e.g. "delta link expired; fell back to a full read"


@dataclass
class UserChanges:
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # id -> reason ("changed" soft, "deleted" hard)


@dataclass
class GroupChanges:
    changed: set[str] = field(default_factory=set)  # membership changed (members@delta seen)
    removed: set[str] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)  # renamed or new groups

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed or self.names)


def fold_users(items: Iterable[dict[str, Any]], into: UserChanges | None = None) -> UserChanges:
    """Fold users-delta items (in order) into updates and removals."""
    out = into or UserChanges()
    for item in items:
        uid = item.get("id")
        if not isinstance(uid, str):
            continue
        removed = item.get("@removed")
        if removed is not None:
            out.updates.pop(uid, None)
            out.removed[uid] = str(removed.get("reason", "deleted")) if isinstance(removed, dict) else "deleted"
            continue
        out.removed.pop(uid, None)
        props = {k: v for k, v in item.items() if k in _USER_FIELDS}
        out.updates[uid] = {**out.updates.get(uid, {}), **props}
    return out


def fold_groups(items: Iterable[dict[str, Any]], into: GroupChanges | None = None) -> GroupChanges:
    """Fold groups-delta items (in order) into changed, removed and renamed groups."""
    out = into or GroupChanges()
    for item in items:
        gid = item.get("id")
        if not isinstance(gid, str):
            continue
        if item.get("@removed") is not None:
            out.removed.add(gid)
            out.changed.discard(gid)
            out.names.pop(gid, None)
            continue
        out.removed.discard(gid)
        if "members@delta" in item:
            out.changed.add(gid)
        name = item.get("displayName")
        if isinstance(name, str):
            out.names[gid] = name
    return out


def baseline_edges(frame: pl.DataFrame) -> pl.DataFrame:
    """``(id, group_id)`` for every membership in a frame."""
    return (
        frame.select("id", pl.col("group_ids").alias("group_id"))
        .explode("group_id")
        .drop_nulls("group_id")
        .cast(EDGE_SCHEMA)
    )


def baseline_names(frame: pl.DataFrame) -> dict[str, str]:
    """Group id → display name, as far as the frame knows them (groups with at least one member)."""
    pairs = (
        frame.select(pl.col("group_ids").alias("group_id"), pl.col("groups").alias("group_name"))
        .explode("group_id", "group_name")
        .drop_nulls("group_id")
        .unique("group_id", keep="first")
    )
    return dict(zip(pairs.get_column("group_id").to_list(), pairs.get_column("group_name").to_list(), strict=True))


def merge_users(baseline: pl.DataFrame, changes: UserChanges, *, accept_new: bool) -> pl.DataFrame:
    """Apply user updates and removals to ``baseline`` (ENTRA_SCHEMA); memberships are handled later.

    Properties present in an update win, absent ones keep the baseline's value. Users not in the baseline
    are added only when ``accept_new`` (without a group scope); new users start with no groups.
    """
    known = set(baseline.get_column("id").to_list()) if changes.updates else set()
    changed_ids = [uid for uid in changes.updates if uid in known or accept_new]
    base_rows = {
        r["id"]: r for r in baseline.filter(pl.col("id").is_in([u for u in changed_ids if u in known])).to_dicts()
    }
    merged = []
    for uid in changed_ids:
        row = base_rows.get(uid) or {"groups": [], "group_ids": []}
        merged.append({**row, **changes.updates[uid], "id": uid})
    drop = [*changes.removed, *changed_ids]
    kept = baseline.filter(~pl.col("id").is_in(drop)) if drop else baseline
    if not merged:
        return kept
    added = conform(pl.from_dicts(merged, schema=ENTRA_SCHEMA, strict=False), ENTRA_SCHEMA).with_columns(
        # Graph never sends businessPhones as null (unset is []); delta leaves unset properties out.
        pl.col("businessPhones").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )
    return pl.concat([kept, added])


def attach_memberships(users: pl.DataFrame, edges: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Join ``(id, group_id)`` edges and ``(group_id, group_name)`` names onto users as ``groups``/``group_ids``.

    Lists are ordered by group name then id, so equal tenants give equal frames.
    """
    memberships = (
        edges.unique()
        .join(names.unique("group_id", keep="last"), on="group_id", how="inner")
        .sort("id", "group_name", "group_id")
        .group_by("id", maintain_order=True)
        .agg(pl.col("group_name").alias("groups"), pl.col("group_id").alias("group_ids"))
    )
    empty = pl.lit([], dtype=pl.List(pl.String))
    joined = users.drop("groups", "group_ids", strict=False).join(memberships, on="id", how="left", validate="m:1")
    return conform(
        joined.with_columns(pl.col("groups").fill_null(empty), pl.col("group_ids").fill_null(empty)), ENTRA_SCHEMA
    )


def rebuild_memberships(
    frame: pl.DataFrame,
    *,
    replaced_groups: set[str],
    new_edges: pl.DataFrame,
    names: dict[str, str],
    extra_edges_for: dict[str, list[str]] | None = None,
) -> pl.DataFrame:
    """Recompute ``groups``/``group_ids``: drop edges of ``replaced_groups``, add ``new_edges``, rename.

    ``extra_edges_for`` maps a user id to its complete list of group ids (users whose memberships were read
    one by one); their old edges are replaced entirely.
    """
    edges = baseline_edges(frame)
    if replaced_groups:
        edges = edges.filter(~pl.col("group_id").is_in(list(replaced_groups)))
    parts = [edges, new_edges.cast(EDGE_SCHEMA)]
    if extra_edges_for:
        parts[0] = parts[0].filter(~pl.col("id").is_in(list(extra_edges_for)))
        parts.append(
            pl.DataFrame(
                [(uid, gid) for uid, gids in extra_edges_for.items() for gid in gids], schema=EDGE_SCHEMA, orient="row"
            )
        )
    name_frame = pl.DataFrame({"group_id": list(names), "group_name": list(names.values())}, schema=NAME_SCHEMA)
    return attach_memberships(frame, pl.concat(parts), name_frame)
