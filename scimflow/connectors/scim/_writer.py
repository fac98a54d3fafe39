"""The SCIM writer: :class:`scimflow.apply.Writer` for ``target: scim``.

- Matching: a row's partner id (the stored link, the cached SCIM ``id``) first; a create finds an existing
  user by ``userName`` (case-insensitive) then ``externalId`` (``entra``: always, as Entra does; ``rfc``: for
  a retried row, and on a 409). A cached id that answers 404 re-matches by filter (the row's ``userName``,
  then its ``entra_id`` as ``externalId``): at the re-read before writing (:meth:`ScimWriter.read_users`
  answers for the cached id with the user found, whose ``id`` it carries), or at the write itself. The write
  goes to the user found and returns its id (the engine then links the Entra user to it); a user found by
  neither filter is gone (the engine holds the row as drifted).
- Users: ``create`` POSTs, ``update`` PATCHes the changed attributes, ``retire`` PATCHes ``active`` false
  (memberships kept, never DELETE), ``reactivate`` ``active`` true with the row's other changes in the same PATCH.
- Computed groups: :meth:`ScimWriter.prepare` creates the groups a chunk's rows need that do not exist yet
  (never deleted or re-keyed); :meth:`ScimWriter.write` queues membership changes; :meth:`ScimWriter.finish_chunk`
  sends them in batches, per group (many members per PATCH).
- Records (:meth:`ScimWriter.read_users`): the user's values under the plan's field names plus the element
  values of its computed groups, from the writer's view of memberships (listed once, then kept up to date by
  its own PATCHes). Where the server refuses listing, the view is read group by group (``displayName eq``)
  for ``group_names`` (every computed group the rules can give: pass them, e.g. from
  :func:`scimflow.computed_groups.img_rules`), plus the groups a chunk's rows move users out of.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scimflow.apply import PlanRow, RowKey, TargetView, chunk_rows
from scimflow.computed_groups import groups_for, parse_group_name, values_from_groups
from scimflow.config import ScimConfig
from scimflow.connectors.errors import ConnectorError, NotFoundError, PayloadError
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy
from scimflow.connectors.scim._client import ListingRefusedError, ScimClient
from scimflow.connectors.scim._mapping import USER_FIELDS, user_values
from scimflow.rules import ELEMENTS
from scimflow.vocab import same_value

__all__ = ["ScimWriter"]


@dataclass
class _Chunk:
    """A chunk's pending membership changes: group name → user ids to add / remove, and the rows behind them."""

    retried: frozenset[str] = frozenset()
    adds: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    removes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    rows: dict[str, list[RowKey]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)


def _who(row: PlanRow) -> tuple[str, str | None]:
    """What a user whose cached id is gone is found by again: the row's ``userName``, its Entra id."""
    user_name = row.from_values().get("user_name") or row.to_values().get("user_name") or row.key
    return str(user_name), row.entra_id


def _same(name: str, current: Any, wanted: Any) -> bool:
    """One value comparison for every stage (:func:`scimflow.vocab.same_value`); ``active`` unset is active."""
    if name == "active":
        return (current is not False) == (wanted is not False)
    return same_value(name, current, wanted)


class ScimWriter:
    """Writes plan rows to a SCIM server (thread-safe; see the module docstring)."""

    def __init__(
        self,
        config: ScimConfig,
        *,
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        client: ScimClient | None = None,
        group_names: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.group_names = sorted(set(group_names))
        self.prefix = config.group_prefix
        self.client = client or ScimClient(config, ca_bundle=ca_bundle, transport=transport, policy=policy)
        self._lock = threading.RLock()
        self._listed = False
        self._lookup = False  # listing refused: look a group up before creating it
        self._group_ids: dict[str, str] = {}  # computed group name -> id
        self._members: dict[str, set[str]] = defaultdict(set)  # group name -> member user ids
        self._fresh: dict[str, dict[str, Any]] = {}  # user id -> values a write answered with
        self._group_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        # Every write and membership PATCH holds a slot: requests in flight never exceed write_concurrency,
        # though membership PATCHes of one chunk run beside the next chunk's writes.
        self._slots = threading.BoundedSemaphore(config.write_concurrency)

    @property
    def concurrency(self) -> int:
        return self.config.write_concurrency

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ScimWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ groups view
    def _load_groups(self) -> None:
        """List the computed groups with their members once (where the server lists)."""
        with self._lock:
            if self._listed:
                return
            try:
                groups = self.client.list_groups()
            except ListingRefusedError:
                self._lookup = True
                groups = [g for name in self.group_names if (g := self._look_up(name)) is not None]
            for g in groups:
                name = str(g.get("displayName") or "")
                if not name.startswith(self.prefix + ":") or not g.get("id"):
                    continue
                self._group_ids[name] = str(g["id"])
                self._members[name] = {str(m["value"]) for m in g.get("members") or () if m.get("value")}
            self._listed = True

    def _look_up(self, name: str) -> dict[str, Any] | None:
        """Group ``name`` with its members, found by ``displayName`` (listing refused), else ``None``."""
        found = self.client.find_group(name)
        return None if found is None else self.client.get_group(str(found["id"]))

    def _know_group(self, name: str) -> None:
        """Listing refused: learn an existing group's members (never creates it)."""
        with self._lock:
            if not self._lookup or name in self._group_ids:
                return
            group = self._look_up(name)
            if group is not None:
                self._group_ids[name] = str(group["id"])
                self._members[name] = {str(m["value"]) for m in group.get("members") or () if m.get("value")}

    def _ensure_group(self, name: str) -> str:
        """The id of computed group ``name``, found or created (created once, never deleted)."""
        self._load_groups()
        with self._lock:
            known = self._group_ids.get(name)
            if known is not None:
                return known
            group, created = self.client.create_group(name, look_first=self._lookup)
            gid = str(group["id"])
            members = [] if created else self.client.get_group(gid).get("members")
            self._group_ids[name] = gid
            self._members[name] = {str(m["value"]) for m in members or () if m.get("value")}
            return gid

    def _groups_of(self, user_id: str) -> list[str]:
        with self._lock:
            return sorted(name for name, members in self._members.items() if user_id in members)

    def _record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        groups = self._groups_of(str(values["id"]))
        return {**values, **values_from_groups(self.prefix, groups), "groups": groups}

    # ------------------------------------------------------------------ protocol
    def read_users(self, ids: Sequence[str], *, rows: Sequence[PlanRow] = ()) -> dict[str, Mapping[str, Any]]:
        """Each user by id (``GET /Users/{id}``, in parallel; a write's own answer is used once instead).

        An id that answers 404 and is the partner of one of ``rows`` (the drift re-read's) is re-matched by
        that row's ``userName``, then its Entra id as ``externalId``; the user found is returned under the id
        asked for, its own ``id`` in the record. Not found: left out (gone).
        """
        self._load_groups()

        def one(user_id: str) -> dict[str, Any] | None:
            with self._lock:
                fresh = self._fresh.pop(user_id, None)
            if fresh is not None:
                return fresh
            try:
                return user_values(self.client.get_user(user_id))
            except NotFoundError:
                return None

        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(wanted))) as pool:
            found = list(pool.map(one, wanted))
            gone = {uid for uid, v in zip(wanted, found, strict=True) if v is None}
            who = {r.partner_id: _who(r) for r in rows if r.partner_id in gone and r.action != "create"}
            if who:
                again = dict(zip(who, pool.map(self._rematch, who, who.values()), strict=True))
                found = [again.get(uid) if v is None else v for uid, v in zip(wanted, found, strict=True)]
        return {uid: self._record(v) for uid, v in zip(wanted, found, strict=True) if v is not None}

    def _rematch(self, user_id: str, who: tuple[str, str | None]) -> dict[str, Any] | None:
        """The user whose cached ``user_id`` is gone, found by ``userName`` then ``externalId``, else ``None``."""
        found = self.client.find_user(user_name=who[0], external_id=who[1])
        if found is None or not found.get("id") or str(found["id"]) == user_id:
            return None
        return user_values(found)

    def differences(self, current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
        """Fields of ``values`` whose value in ``current`` differs (:func:`scimflow.vocab.same_value`)."""
        return [f for f, v in values.items() if not _same(f, current.get(f), v)]

    def prepare(self, rows: Sequence[PlanRow], *, retried: AbstractSet[str]) -> _Chunk:
        """Create the computed groups the rows' new values need (before any membership is sent)."""
        names: set[str] = set()
        before: set[str] = set()
        for row in rows:
            names |= groups_for(self.prefix, {k: v for k, v in row.to_values().items() if k in ELEMENTS})
            before |= groups_for(self.prefix, {k: v for k, v in row.from_values().items() if k in ELEMENTS})
        self._load_groups()
        for name in sorted(before - names):
            self._know_group(name)
        for name in sorted(names):
            self._ensure_group(name)
        return _Chunk(retried=frozenset(retried))

    def write(self, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> str | None:
        """Write one row's user part now; queue its membership changes for :meth:`finish_chunk`."""
        with self._slots:
            return self._write(row, current, chunk)

    def _write(self, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> str | None:
        ctx = chunk if isinstance(chunk, _Chunk) else _Chunk()
        to = row.to_values()
        user_changes = {k: v for k, v in to.items() if k in USER_FIELDS}
        element_to = {k: v for k, v in to.items() if k in ELEMENTS}
        if row.action == "create":
            values = {**user_changes, "active": True}
            values.setdefault("user_name", row.key)
            if row.entra_id:
                values.setdefault("entra_id", row.entra_id)
            made = self.client.create_user(values, look_first=row.key in ctx.retried)
            uid = made.id
            self._queue_elements(ctx, row, uid, element_to)
            with self._lock:
                self._fresh[uid] = made.values
            return uid
        if row.partner_id is None:
            raise PayloadError(f"plan row {row.key} ({row.action}) has no partner id")
        now = dict(current) if current is not None else {}
        uid = str(now.get("id") or row.partner_id)  # the re-read's user: another id where the cached one is gone
        if row.action == "retire":
            user_changes = {"active": False}
            element_to = {}
        elif row.action == "reactivate":
            user_changes["active"] = True
        uid = self._patch(row, uid, user_changes, now)
        self._queue_elements(ctx, row, uid, element_to)
        return uid

    def _queue_elements(self, ctx: _Chunk, row: PlanRow, uid: str, element_to: Mapping[str, Any]) -> None:
        """Queue the membership changes that give ``uid`` exactly ``element_to``'s groups for those elements
        (from the user's actual computed groups, so a user left in two groups of one element ends in one)."""
        if not element_to:
            return
        after = groups_for(self.prefix, element_to)
        mine = {
            g
            for g in self._groups_of(uid)
            if (p := parse_group_name(self.prefix, g)) is not None and p[0] in element_to
        }
        self._queue(ctx, row, uid, add=after - mine, remove=mine - after)

    def _patch(self, row: PlanRow, uid: str, changes: Mapping[str, Any], current: Mapping[str, Any]) -> str:
        """PATCH ``changes`` on ``uid``; on a 404 re-match by filter and PATCH the user found."""
        if not changes:
            return uid
        try:
            answer = self.client.patch_user(uid, changes, current, version=current.get("version"))
        except NotFoundError:
            user_name = current.get("user_name") or row.from_values().get("user_name") or row.key
            found = self.client.find_user(user_name=user_name, external_id=row.entra_id or current.get("entra_id"))
            if found is None:
                raise
            uid = str(found["id"])
            values = user_values(found)
            answer = self.client.patch_user(uid, changes, values, version=values.get("version"))
        if answer is not None:
            with self._lock:
                self._fresh[uid] = user_values(answer)
        return uid

    def _queue(self, ctx: _Chunk, row: PlanRow, uid: str, *, add: set[str], remove: set[str]) -> None:
        with ctx.lock:
            for name in add:
                ctx.adds[name].add(uid)
                ctx.rows[name].append((row.key, row.action))
            for name in remove:
                ctx.removes[name].add(uid)
                ctx.rows[name].append((row.key, row.action))

    # ------------------------------------------------------------------ the cost of a plan
    def requests_for(self, rows: Sequence[PlanRow], seen: TargetView) -> Counter[str]:
        """What an apply of ``rows`` sends (no drift, a server that lists): the groups' listing, then per chunk
        the groups :meth:`prepare` creates, the re-read (:meth:`read_users`), the user writes (:meth:`write`),
        the membership PATCHes (:meth:`finish_chunk`) and the read-back. A create's answer is the user, so it
        is not read back; a PATCH is taken as answered 204 (RFC 7644 §3.5.2, scim2-server), so every other
        row is: a server that answers 200 with the user saves those GETs."""
        out: Counter[str] = Counter()
        if not rows:
            return out
        entra = self.client.dialect == "entra"
        out["GET /Groups"] += max(1, math.ceil(len(seen.groups) / self.config.page_size))
        known = set(seen.groups)
        members: dict[str, set[str]] = defaultdict(set)  # group -> users the apply added (so far)
        for chunk in chunk_rows(rows):
            ids = {r.partner_id for r in chunk if r.action != "create" and r.partner_id is not None}
            out["GET /Users/{id}"] += len(ids)
            adds: dict[str, set[str]] = defaultdict(set)
            removes: dict[str, set[str]] = defaultdict(set)
            for row in chunk:
                to = {k: v for k, v in row.to_values().items() if k in ELEMENTS}
                for name in sorted(groups_for(self.prefix, to) - known):
                    out.update(["GET /Groups?filter", "POST /Groups"] if entra else ["POST /Groups"])
                    known.add(name)
                out.update(self._row_requests(row, entra))
                if row.action == "retire" or not to:
                    continue
                uid = row.partner_id or row.key
                mine = groups_for(self.prefix, {k: v for k, v in row.from_values().items() if k in to})
                after = groups_for(self.prefix, to)
                for name in after - mine:
                    adds[name].add(uid)
                for name in mine - after:
                    removes[name].add(uid)
            step = self.client.member_batch
            for name in sorted(set(adds) | set(removes)):
                out["PATCH /Groups/{id}"] += math.ceil(len(adds[name] - members[name]) / step)
                out["PATCH /Groups/{id}"] += math.ceil(len(removes[name]) / step)
                members[name] |= adds[name]
            out["GET /Users/{id}"] += sum(1 for r in chunk if r.action != "create")
        if self.client.dialect == "rfc" and out["PATCH /Users/{id}"]:
            out["GET /ServiceProviderConfig"] += 1  # etags_supported, read once before the first If-Match
        return out

    @staticmethod
    def _user_changes(row: PlanRow) -> dict[str, Any]:
        """The user part :meth:`_write` PATCHes for a non-create row."""
        if row.action == "retire":
            return {"active": False}
        changes = {k: v for k, v in row.to_values().items() if k in USER_FIELDS}
        if row.action == "reactivate":
            changes["active"] = True
        return changes

    def _row_requests(self, row: PlanRow, entra: bool) -> list[str]:
        """The user requests :meth:`_write` sends for ``row`` (a create found by neither filter is POSTed)."""
        if row.action == "create":
            looks = ["GET /Users?filter"] * (1 + bool(row.entra_id)) if entra else []
            return [*looks, "POST /Users"]
        return ["PATCH /Users/{id}"] if self._user_changes(row) else []

    def finish_chunk(self, chunk: Any) -> Mapping[RowKey, str]:
        """Send the chunk's membership changes: groups side by side, each group's PATCHes in turn (one group is
        never PATCHed by two threads at once), ``member_batch`` members per PATCH; failed rows named."""
        if not isinstance(chunk, _Chunk):
            return {}
        names = sorted(set(chunk.adds) | set(chunk.removes))
        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(names))) as pool:
            errors = list(pool.map(lambda name: self._send_members(name, chunk), names))
        failed: dict[RowKey, str] = {}
        for name, exc in zip(names, errors, strict=True):
            if exc is not None:
                for key in chunk.rows.get(name, []):
                    failed.setdefault(key, f"membership of {name}: {exc}")
        return failed

    def _send_members(self, name: str, chunk: _Chunk) -> ConnectorError | None:
        try:
            gid = self._ensure_group(name)
            with self._lock:
                group_lock = self._group_locks[name]
            with group_lock:
                with self._lock:
                    members = set(self._members[name])
                add = sorted(chunk.adds.get(name, set()) - members)
                remove = sorted(chunk.removes.get(name, set()) & members)
                step = self.client.member_batch
                batches: list[tuple[list[str], list[str]]] = [(add[i : i + step], []) for i in range(0, len(add), step)]
                batches += [([], remove[i : i + step]) for i in range(0, len(remove), step)]
                for part_add, part_remove in batches:
                    with self._slots:
                        self.client.change_members(gid, part_add, part_remove)
                    with self._lock:
                        self._members[name] |= set(part_add)
                        self._members[name] -= set(part_remove)
        except ConnectorError as exc:
            return exc
        return None
