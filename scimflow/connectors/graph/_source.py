"""The Entra ID source: users with transitive group memberships from Microsoft Graph, full or by delta.

Full read (:meth:`GraphSource.read_users`):

1. ``GET /v1.0/groups?$select=id,displayName&$top=N`` (paged): every group's id and name.
2. ``GET /v1.0/groups/{id}/transitiveMembers?$select=id&$top=N`` once per group (paged; only
   ``#microsoft.graph.user`` items kept): the membership edges. Requests scale with groups and
   memberships, never with users (no request per user).
3. ``GET /v1.0/users?$select=<GRAPH_USER_FIELDS>&$top=N`` following absolute ``@odata.nextLink`` URLs
   to the end. Each page becomes a small frame right away (the JSON is dropped), and the pages are
   concatenated once, so memory stays flat: 100k users stay far below 1 GiB.
4. One Polars join puts ``groups`` (display names) and ``group_ids`` (ids) on every user; with an
   ``entra.groups`` scope only transitive members of those groups (names or ids) are kept.

Delta (:meth:`GraphSource.read_delta`, contract in docs/internals.md): without a baseline or links, it
first takes ``$deltatoken=latest`` links for users and groups and *then* does the full read, so a change
made during the read is replayed by the next round rather than lost (replays are harmless: folding is
idempotent). With both, it reads ``/users/delta`` and ``/groups/delta?$select=displayName,members`` from
the stored links to their new deltaLinks (``Prefer: return=minimal``, sent on every page since Graph
does not carry headers into nextLinks), folds them (:mod:`._delta`), re-reads ``transitiveMembers`` of
the groups whose membership changed and of their ancestors, and rebuilds ``groups``/``group_ids``.
Nothing is applied before both rounds reached their deltaLink. An expired link (410, or a 4xx with
``syncStateNotFound``/``resyncRequired``) falls back to a full read by itself and says so in ``note``.

Every request goes through :class:`~scimflow.connectors.graph._odata.GraphReader` (the HTTP side: the one
retry layer, paging, delta rounds, the origin guard); this module decides what to read.
Logs: INFO has the method, the sanitised path and counts; nothing logs headers or tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

import polars as pl

from scimflow.connectors.errors import ConnectorError, DeltaExpiredError, PayloadError
from scimflow.connectors.graph._delta import (
    EDGE_SCHEMA,
    NAME_SCHEMA,
    DeltaLinks,
    DeltaResult,
    GroupChanges,
    UserChanges,
    attach_memberships,
    baseline_names,
    fold_groups,
    fold_users,
    merge_users,
    rebuild_memberships,
)
from scimflow.connectors.graph._odata import GraphReader
from scimflow.frames import ENTRA_SCHEMA, GRAPH_USER_FIELDS, conform

__all__ = ["GraphSource"]

log = logging.getLogger("scimflow.graph")

USER_TYPE = "#microsoft.graph.user"
#: Above this many users needing one-by-one membership reads, a delta round re-reads the tenant instead.
_PER_USER_LIMIT = 200
_IN_CHUNK = 15  # Graph allows at most 15 values in an `in` filter


class GraphSource(GraphReader):
    """Read Entra ID users (ENTRA_SCHEMA frames) from Microsoft Graph.

    Args:
        config: the ``entra`` section (tenant, client, credential, URLs, optional group scope, page size).
        ca_bundle: an extra CA to trust besides the system store (the emulators use one).
        transport: an httpx transport to use instead of the network (tests, in-process emulators).
        policy: bounds of the one retry layer.

    Example::

        with GraphSource(cfg.entra, ca_bundle=cfg.ca_bundle) as graph:
            users = graph.read_users()
    """

    # ---- URLs ------------------------------------------------------------------------------------

    @property
    def _top(self) -> int:
        return self._config.page_size

    def _users_url(self, extra: str = "") -> str:
        return f"/v1.0/users?$select={','.join(GRAPH_USER_FIELDS)}&$top={self._top}{extra}"

    @staticmethod
    def _users_delta_url() -> str:
        return f"/v1.0/users/delta?$select={','.join(GRAPH_USER_FIELDS)}"

    @staticmethod
    def _groups_delta_url() -> str:
        return "/v1.0/groups/delta?$select=displayName,members"

    # ---- full read -------------------------------------------------------------------------------

    def read_users(self) -> pl.DataFrame:
        """Every user (or every user in the ``entra.groups`` scope) with ``groups`` and ``group_ids``."""
        started = time.monotonic()
        before = self.requests
        names = self._read_groups()
        scope = self._scope_ids(names)
        edges = self._read_edges(names.get_column("group_id").to_list())
        users = self._read_user_pages(self._users_url())
        frame = attach_memberships(users, edges, names)
        if scope is not None:
            frame = _in_scope(frame, scope)
        log.info(
            "read %d users, %d groups, %d memberships in %d requests (%.1f s)",
            frame.height,
            names.height,
            edges.height,
            self.requests - before,
            time.monotonic() - started,
        )
        return frame

    def _read_groups(self) -> pl.DataFrame:
        frames = [
            pl.DataFrame([(g.get("id"), g.get("displayName")) for g in page], schema=NAME_SCHEMA, orient="row")
            for page in self._pages(f"/v1.0/groups?$select=id,displayName&$top={self._top}")
        ]
        return pl.concat(frames) if frames else pl.DataFrame(schema=NAME_SCHEMA)

    def _read_edges(self, group_ids: list[str]) -> pl.DataFrame:
        frames = [pl.DataFrame(schema=EDGE_SCHEMA)]
        for gid in group_ids:
            frames.extend(
                pl.DataFrame({"id": ids, "group_id": [gid] * len(ids)}, schema=EDGE_SCHEMA)
                for ids in self._member_pages(gid)
            )
        return pl.concat(frames).unique(maintain_order=True)

    def _member_pages(self, gid: str) -> Iterator[list[str]]:
        url = f"/v1.0/groups/{quote(gid, safe='')}/transitiveMembers?$select=id&$top={self._top}"
        for page in self._pages(url):
            yield [str(m["id"]) for m in page if m.get("@odata.type") == USER_TYPE and "id" in m]

    def _scope_ids(self, names: pl.DataFrame) -> set[str] | None:
        """The scope's group ids (``entra.groups`` names or ids), or ``None`` without a scope."""
        if not self._config.groups:
            return None
        by_id = set(names.get_column("group_id").to_list())
        by_name: dict[str, list[str]] = {}
        for gid, name in names.iter_rows():
            by_name.setdefault(str(name).casefold(), []).append(gid)
        out: set[str] = set()
        for wanted in self._config.groups:
            if wanted in by_id:
                out.add(wanted)
                continue
            found = by_name.get(wanted.casefold(), [])
            if len(found) != 1:
                problem = "is not a group in the tenant" if not found else "names more than one group; use its id"
                msg = f"entra.groups: {wanted!r} {problem}"
                raise ConnectorError(msg)
            out.add(found[0])
        return out

    # ---- delta -----------------------------------------------------------------------------------

    def read_delta(self, baseline: pl.DataFrame | None, links: DeltaLinks | None) -> DeltaResult:
        """The tenant after the changes since ``links`` were issued, applied to ``baseline``.

        Without a baseline or links this is a full read (``full_read=True``) that returns fresh links.
        An expired link falls back to a full read by itself (``note`` says so).
        """
        before = self.requests
        if baseline is None or links is None:
            return self._full_delta(before, note=None)
        try:
            return self._incremental(conform(baseline, ENTRA_SCHEMA), links, before)
        except DeltaExpiredError as exc:
            log.warning("delta link expired (%s); falling back to a full read", exc.status)
            return self._full_delta(before, note="delta link expired; fell back to a full read")

    def _full_delta(self, before: int, *, note: str | None) -> DeltaResult:
        # Links first, then the read: what changes meanwhile is replayed next round, not lost.
        links = DeltaLinks(users=self._latest(self._users_delta_url()), groups=self._latest(self._groups_delta_url()))
        frame = self.read_users()
        return DeltaResult(frame, links, full_read=True, removed=[], requests=self.requests - before, note=note)

    def _latest(self, url: str) -> str:
        body = self._get(f"{url}&$deltatoken=latest", delta=True)
        link = body.get("@odata.deltaLink")
        if not isinstance(link, str) or not link:
            msg = "$deltatoken=latest answered without a deltaLink"
            raise PayloadError(msg, method="GET", url=url)
        return link

    def _incremental(self, baseline: pl.DataFrame, links: DeltaLinks, before: int) -> DeltaResult:
        user_items, users_link = self._delta_round(links.users)
        group_items, groups_link = self._delta_round(links.groups)
        users = fold_users(user_items)
        groups = fold_groups(group_items)
        del user_items, group_items
        scoped = bool(self._config.groups)
        frame = merge_users(baseline, users, accept_new=not scoped)
        frame, note = self._apply_groups(frame, baseline, users, groups)
        removed = sorted(users.removed)
        log.info(
            "delta: %d users changed, %d removed, %d groups changed, %d groups removed; %d users now",
            len(users.updates),
            len(removed),
            len(groups.changed),
            len(groups.removed),
            frame.height,
        )
        return DeltaResult(
            frame=frame,
            links=DeltaLinks(users=users_link, groups=groups_link),
            full_read=False,
            removed=removed,
            requests=self.requests - before,
            note=note,
        )

    def _apply_groups(
        self, frame: pl.DataFrame, baseline: pl.DataFrame, users: UserChanges, groups: GroupChanges
    ) -> tuple[pl.DataFrame, str | None]:
        """Recompute memberships (and the scope) after a delta round; the frame and an optional note."""
        scope_wanted = self._config.groups
        known = set(baseline.get_column("id").to_list())
        newcomers = [u for u in users.updates if u not in known] if not scope_wanted else []
        if not groups and not newcomers and not scope_wanted:
            return frame, None
        names = baseline_names(baseline)
        replaced: set[str] = set(groups.changed)
        for gid in list(groups.changed):
            for ancestor, name in self._ancestors(gid):
                replaced.add(ancestor)
                names[ancestor] = name
        names.update(groups.names)
        for gid in groups.removed:
            names.pop(gid, None)
        replaced -= groups.removed
        for gid in sorted(g for g in replaced if g not in names):
            names[gid] = self._group_name(gid)
        new_edges = self._read_edges(sorted(replaced))
        covered = set(new_edges.get_column("id").to_list())
        # Users new to the frame that no re-read group covers (e.g. restored users): read their groups.
        lonely = [u for u in newcomers if u not in covered]
        scope: set[str] | None = None
        missing: list[str] = []
        if scope_wanted:
            scope = self._scope_ids(self._scope_names(names)) or set()
            edges_now = rebuild_memberships(
                frame, replaced_groups=replaced | groups.removed, new_edges=new_edges, names=names
            )
            in_scope = set(
                pl.concat(
                    [
                        edges_now.select("id", "group_ids").explode("group_ids").rename({"group_ids": "group_id"}),
                        new_edges,
                    ]
                )
                .filter(pl.col("group_id").is_in(list(scope)))
                .get_column("id")
                .to_list()
            )
            in_scope -= set(users.removed)
            missing = sorted(in_scope - set(frame.get_column("id").to_list()))
        if len(lonely) + len(missing) > _PER_USER_LIMIT:
            log.info(
                "delta: %d users need their memberships read one by one; re-reading the tenant instead",
                len(lonely) + len(missing),
            )
            return self.read_users(), "many membership changes; re-read the whole tenant"
        per_user = {uid: self._member_of(uid, names) for uid in [*lonely, *missing]}
        if missing:
            frame = pl.concat([frame, self._users_by_id(missing)])
        frame = rebuild_memberships(
            frame,
            replaced_groups=replaced | groups.removed,
            new_edges=new_edges,
            names=names,
            extra_edges_for=per_user,
        )
        if scope is not None:
            frame = _in_scope(frame, scope)
        return frame, None

    def _scope_names(self, names: dict[str, str]) -> pl.DataFrame:
        """Group ids and names to resolve the scope against: the frame's, or the tenant's when one is unknown."""
        frame = pl.DataFrame({"group_id": list(names), "group_name": list(names.values())}, schema=NAME_SCHEMA)
        lowered = {n.casefold() for n in names.values()}
        if all(g in names or g.casefold() in lowered for g in self._config.groups):
            return frame
        return self._read_groups()

    def _ancestors(self, gid: str) -> list[tuple[str, str]]:
        """``(id, displayName)`` of every group ``gid`` is nested in (directly or not)."""
        url = f"/v1.0/groups/{quote(gid, safe='')}/transitiveMemberOf?$select=id,displayName&$top={self._top}"
        out: list[tuple[str, str]] = []
        try:
            for page in self._pages(url):
                out.extend(
                    (str(g["id"]), str(g.get("displayName") or ""))
                    for g in page
                    if g.get("@odata.type", "#microsoft.graph.group") == "#microsoft.graph.group" and "id" in g
                )
        except ConnectorError as exc:
            if exc.status != 404:  # deleted meanwhile: its parents' own deltas report the change
                raise
        return out

    def _group_name(self, gid: str) -> str:
        body = self._get(f"/v1.0/groups/{quote(gid, safe='')}?$select=id,displayName")
        return str(body.get("displayName") or "")

    def _member_of(self, uid: str, names: dict[str, str]) -> list[str]:
        url = f"/v1.0/users/{quote(uid, safe='')}/transitiveMemberOf?$select=id,displayName&$top={self._top}"
        out: list[str] = []
        for page in self._pages(url):
            for g in page:
                if g.get("@odata.type", "#microsoft.graph.group") == "#microsoft.graph.group" and "id" in g:
                    out.append(str(g["id"]))
                    names.setdefault(str(g["id"]), str(g.get("displayName") or ""))
        return out

    def _users_by_id(self, ids: list[str]) -> pl.DataFrame:
        frames = [pl.DataFrame(schema=ENTRA_SCHEMA)]
        for i in range(0, len(ids), _IN_CHUNK):
            quoted = ",".join("'" + u.replace("'", "''") + "'" for u in ids[i : i + _IN_CHUNK])
            users = self._read_user_pages(self._users_url(f"&$filter={quote(f'id in ({quoted})', safe='')}"))
            frames.append(conform(users, ENTRA_SCHEMA))
        return pl.concat(frames)


def _in_scope(frame: pl.DataFrame, scope: set[str]) -> pl.DataFrame:
    wanted = list(scope)
    return frame.filter(pl.col("group_ids").list.eval(pl.element().is_in(wanted)).list.any())
