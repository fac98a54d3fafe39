"""The emulated directory: users, groups, direct memberships, and the change log delta rounds read.

Not thread-safe on its own: :class:`~scimflow.emulators.graph.GraphEmulator` guards it with a lock.

Design (chosen for 100k+ users):

- Users and groups live in insertion-ordered dicts indexed by id; the ``/users`` listing is a cached
  list of live ids, rebuilt only after a create or delete, and pages are slices of it (offset in the
  opaque ``$skiptoken``).
- Transitive members of every group are computed once (depth-first over nested groups) and cached until
  a membership or a user's existence changes; ``transitiveMemberOf`` is the inverted cache.
- Delta: every change appends ``(version, object id)`` to an append-only log per kind, and each log
  entry remembers the previous entry of the same object. A round from version ``f`` walks the log
  from the first entry after ``f`` up to the round's start version ``t``, emitting each object once
  (its *current* state) at its first entry in that window. Because the log only grows, offsets in a
  ``$skiptoken`` never shift, so a page is never skipped; the deltaLink carries ``t``, so a change made
  during the round is replayed in the next one (Graph allows replays). Per-property versions (only for
  objects changed after loading) give ``Prefer: return=minimal`` its changed-properties-only answers
  and make ``$select`` narrow change tracking, as Graph documents.

The module is longer than the project's ~500 lines on purpose: the caches and the change log above are
one invariant (every write bumps a version, logs the change and drops exactly the caches it touches),
which reads best in one class; OData filters, the routes and the knobs live in their own modules.
"""

from __future__ import annotations

import bisect
import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_USER_PROPERTIES",
    "GROUP_PROPERTIES",
    "USER_PROPERTIES",
    "DeltaPage",
    "Tenant",
    "TenantError",
]

#: The 11 properties ``/users`` returns without ``$select`` (reference/graph.md §1).
DEFAULT_USER_PROPERTIES: tuple[str, ...] = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)

#: Properties ``$select`` may name on users (unknown names give 400 like Graph).
USER_PROPERTIES: frozenset[str] = frozenset(
    {
        *DEFAULT_USER_PROPERTIES,
        "accountEnabled",
        "employeeId",
        "employeeType",
        "department",
        "companyName",
        "country",
        "city",
        "state",
        "postalCode",
        "streetAddress",
        "usageLocation",
        "userType",
        "createdDateTime",
        "mailNickname",
        "otherMails",
        "proxyAddresses",
        "employeeHireDate",
        "onPremisesSamAccountName",
        "onPremisesImmutableId",
        "onPremisesSyncEnabled",
        "onPremisesUserPrincipalName",
        "deletedDateTime",
        "manager",
        "faxNumber",
        "ageGroup",
        "legalAgeGroupClassification",
        "preferredName",
    }
)

#: Properties of groups the emulator knows (``members`` is the navigation property delta tracks).
GROUP_PROPERTIES: frozenset[str] = frozenset(
    {
        "id",
        "displayName",
        "description",
        "mail",
        "mailEnabled",
        "mailNickname",
        "securityEnabled",
        "groupTypes",
        "createdDateTime",
        "members",
    }
)

_LIST_USER_PROPERTIES = frozenset({"businessPhones", "otherMails", "proxyAddresses"})

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"


class TenantError(Exception):
    """A mutation or lookup the directory refuses: ``status`` and Graph error ``code`` for the reply."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Log:
    """An append-only change log: entry i is (versions[i], ids[i]); prev[i] is the previous entry of ids[i]."""

    versions: list[int]
    ids: list[str]
    prev: list[int]
    last: dict[str, int]

    @classmethod
    def empty(cls) -> _Log:
        return cls([], [], [], {})

    def append(self, version: int, object_id: str) -> None:
        self.prev.append(self.last.get(object_id, -1))
        self.last[object_id] = len(self.ids)
        self.versions.append(version)
        self.ids.append(object_id)

    def start(self, after: int) -> int:
        return bisect.bisect_right(self.versions, after)


@dataclass
class DeltaPage:
    """One delta page: its items and where the next page starts (``None``: the round is complete)."""

    items: list[dict[str, Any]]
    next_pos: int | None
    next_moff: int = 0


class Tenant:
    """Users, groups and memberships with the change bookkeeping that delta rounds need."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version = 1
        self.users: dict[str, dict[str, Any]] = {}
        self.user_tombs: dict[str, tuple[int, str]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_tombs: dict[str, tuple[int, str]] = {}
        self.members: dict[str, dict[str, None]] = {}  # group id -> ordered set of direct member ids
        self.ulog = _Log.empty()
        self.glog = _Log.empty()
        self.created: dict[str, int] = {}  # id -> version created (objects loaded from data: 1)
        self.pver: dict[str, dict[str, int]] = {}  # id -> property -> version last changed (after load)
        self.mlog: dict[str, list[tuple[int, str, bool]]] = {}  # group -> (version, member, added)
        self._live_users: list[str] | None = None
        self._live_groups: list[str] | None = None
        self._trans: dict[str, list[tuple[str, str]]] | None = None
        self._trans_ids: dict[tuple[str, bool], list[str]] = {}
        self._ancestors: dict[str, list[str]] | None = None
        for user in data.get("users", []):
            uid = str(user["id"])
            self.users[uid] = dict(user)
            self.created[uid] = 1
            self.ulog.append(1, uid)
        for group in data.get("groups", []):
            gid = str(group["id"])
            self.groups[gid] = {k: v for k, v in group.items() if k != "members"}
            self.members[gid] = dict.fromkeys(str(m) for m in group.get("members", []))
            self.created[gid] = 1
            self.glog.append(1, gid)

    # ---- reads -------------------------------------------------------------------------------

    def live_users(self) -> list[str]:
        if self._live_users is None:
            self._live_users = list(self.users)
        return self._live_users

    def live_groups(self) -> list[str]:
        if self._live_groups is None:
            self._live_groups = list(self.groups)
        return self._live_groups

    def kind_of(self, object_id: str) -> str | None:
        if object_id in self.users:
            return USER
        if object_id in self.groups:
            return GROUP
        return None

    def transitive_members(self, gid: str) -> list[tuple[str, str]]:
        """``(odata type, id)`` of every live user and group below ``gid`` (nested groups expanded)."""
        if self._trans is None:
            self._trans = {g: self._closure(g) for g in self.groups}
        return self._trans.get(gid, [])

    def transitive_ids(self, gid: str, *, users_only: bool = False) -> list[str]:
        """Ids of :meth:`transitive_members` (optionally users only), cached: pages are slices of it."""
        key = (gid, users_only)
        ids = self._trans_ids.get(key)
        if ids is None:
            ids = [i for kind, i in self.transitive_members(gid) if kind == USER or not users_only]
            self._trans_ids[key] = ids
        return ids

    def _closure(self, root: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen_users: set[str] = set()
        seen_groups = {root}
        stack = [iter(self.members.get(root, {}))]
        while stack:
            member = next(stack[-1], None)
            if member is None:
                stack.pop()
                continue
            if member in self.users:
                if member not in seen_users:
                    seen_users.add(member)
                    out.append((USER, member))
            elif member in self.groups and member not in seen_groups:
                seen_groups.add(member)
                out.append((GROUP, member))
                stack.append(iter(self.members.get(member, {})))
        return out

    def transitive_member_of(self, object_id: str) -> list[str]:
        """Ids of every live group that holds ``object_id`` directly or through nesting."""
        if self._ancestors is None:
            anc: dict[str, list[str]] = {}
            for gid in self.groups:
                for _, mid in self.transitive_members(gid):
                    anc.setdefault(mid, []).append(gid)
            self._ancestors = anc
        return self._ancestors.get(object_id, [])

    def _invalidate_memberships(self) -> None:
        self._trans = None
        self._trans_ids = {}
        self._ancestors = None

    # ---- mutations (each bumps the version and logs) -------------------------------------------

    def _bump(self) -> int:
        self.version += 1
        return self.version

    def create_user(self, body: dict[str, Any]) -> dict[str, Any]:
        user = dict(body)
        uid = str(user.setdefault("id", str(uuid.uuid4())))
        if uid in self.users or uid in self.groups:
            raise TenantError(
                400, "Request_BadRequest", f"Another object with the same value for property id already exists: {uid}"
            )
        upn = str(user.get("userPrincipalName") or "")
        if not upn:
            raise TenantError(400, "Request_BadRequest", "Property userPrincipalName is required.")
        if any(str(u.get("userPrincipalName", "")).lower() == upn.lower() for u in self.users.values()):
            raise TenantError(
                400,
                "Request_BadRequest",
                "Another object with the same value for property userPrincipalName already exists.",
            )
        v = self._bump()
        self.user_tombs.pop(uid, None)
        self.users[uid] = user
        self.created[uid] = v
        self.ulog.append(v, uid)
        self._live_users = None
        self._invalidate_memberships()
        return copy.deepcopy(user)

    def update_user(self, uid: str, changes: dict[str, Any]) -> dict[str, Any]:
        user = self._user(uid)
        if "id" in changes and changes["id"] != uid:
            raise TenantError(400, "Request_BadRequest", "Property id is read-only.")
        v = self._bump()
        pv = self.pver.setdefault(uid, {})
        for name, value in changes.items():
            if name == "id":
                continue
            user[name] = value
            pv[name] = v
        self.ulog.append(v, uid)
        return copy.deepcopy(user)

    def delete_user(self, uid: str, *, permanent: bool) -> None:
        self._user(uid)
        v = self._bump()
        del self.users[uid]
        self.user_tombs[uid] = (v, "deleted" if permanent else "changed")
        self.ulog.append(v, uid)
        if permanent:  # a soft-deleted user keeps its memberships (reference/graph.md §2)
            for gid, members in self.members.items():
                if uid in members:
                    self._member_change(gid, uid, added=False, version=v)
        self._live_users = None
        self._invalidate_memberships()

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        group = {k: val for k, val in body.items() if k != "members"}
        gid = str(group.setdefault("id", str(uuid.uuid4())))
        if gid in self.groups or gid in self.users:
            raise TenantError(
                400, "Request_BadRequest", f"Another object with the same value for property id already exists: {gid}"
            )
        if not group.get("displayName"):
            raise TenantError(400, "Request_BadRequest", "Property displayName is required.")
        v = self._bump()
        self.groups[gid] = group
        self.members[gid] = {}
        self.created[gid] = v
        self.group_tombs.pop(gid, None)
        self.glog.append(v, gid)
        self._live_groups = None
        for mid in body.get("members", []):
            self.add_member(gid, str(mid))
        self._invalidate_memberships()
        return copy.deepcopy(group)

    def update_group(self, gid: str, changes: dict[str, Any]) -> dict[str, Any]:
        group = self._group(gid)
        v = self._bump()
        pv = self.pver.setdefault(gid, {})
        for name, value in changes.items():
            if name in ("id", "members"):
                continue
            group[name] = value
            pv[name] = v
        self.glog.append(v, gid)
        return copy.deepcopy(group)

    def delete_group(self, gid: str) -> None:
        self._group(gid)
        v = self._bump()
        del self.groups[gid]
        self.group_tombs[gid] = (v, "deleted")
        self.glog.append(v, gid)
        for other, members in self.members.items():
            if gid in members and other != gid:
                self._member_change(other, gid, added=False, version=v)
        self._live_groups = None
        self._invalidate_memberships()

    def add_member(self, gid: str, member_id: str) -> None:
        self._group(gid)
        if self.kind_of(member_id) is None:
            raise TenantError(404, "Request_ResourceNotFound", _not_found(member_id))
        if member_id == gid:
            raise TenantError(400, "Request_BadRequest", "A group cannot be a member of itself.")
        if member_id in self.members[gid]:
            raise TenantError(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            )
        self._member_change(gid, member_id, added=True, version=self._bump())
        self._invalidate_memberships()

    def remove_member(self, gid: str, member_id: str) -> None:
        self._group(gid)
        if member_id not in self.members[gid]:
            raise TenantError(404, "Request_ResourceNotFound", _not_found(member_id))
        self._member_change(gid, member_id, added=False, version=self._bump())
        self._invalidate_memberships()

    def _member_change(self, gid: str, member_id: str, *, added: bool, version: int) -> None:
        if added:
            self.members[gid][member_id] = None
        else:
            self.members[gid].pop(member_id, None)
        self.mlog.setdefault(gid, []).append((version, member_id, added))
        self.pver.setdefault(gid, {})["members"] = version
        self.glog.append(version, gid)

    def _user(self, uid: str) -> dict[str, Any]:
        try:
            return self.users[uid]
        except KeyError:
            raise TenantError(404, "Request_ResourceNotFound", _not_found(uid)) from None

    def _group(self, gid: str) -> dict[str, Any]:
        try:
            return self.groups[gid]
        except KeyError:
            raise TenantError(404, "Request_ResourceNotFound", _not_found(gid)) from None

    # ---- delta -----------------------------------------------------------------------------------

    def delta_page(
        self,
        kind: str,
        *,
        after: int,
        upto: int,
        pos: int | None,
        moff: int,
        select: tuple[str, ...],
        minimal: bool,
        page_size: int,
        members_per_slice: int,
    ) -> DeltaPage:
        """One page of a delta round covering changes in ``(after, upto]`` (``after`` 0 = initial round)."""
        log = self.ulog if kind == "users" else self.glog
        start = log.start(after)
        end = log.start(upto)
        i = start if pos is None else pos
        items: list[dict[str, Any]] = []
        while i < end and len(items) < max(1, page_size):
            object_id = log.ids[i]
            if log.prev[i] >= start:  # already emitted at its first entry in this round
                i += 1
                continue
            if kind == "users":
                item = self._user_delta(object_id, after, upto, select, minimal)
                if item is not None:
                    items.append(item)
                i += 1
                continue
            item, members = self._group_delta(object_id, after, upto, select, minimal)
            if item is None:
                i += 1
                continue
            if members is not None and len(members) - moff > members_per_slice:
                # A large group is split over pages: this slice now, the same group again next page.
                item["members@delta"] = members[moff : moff + members_per_slice]
                items.append(item)
                return DeltaPage(items, i, moff + members_per_slice)
            if members is not None:
                item["members@delta"] = members[moff:]
            moff = 0
            items.append(item)
            i += 1
        return DeltaPage(items, i if i < end else None)

    def _changed(self, object_id: str, after: int, select: Iterable[str]) -> bool:
        if self.created.get(object_id, 1) > after:
            return True
        pv = self.pver.get(object_id)
        return pv is not None and any(pv.get(p, 0) > after for p in select)

    def _user_delta(
        self, uid: str, after: int, upto: int, select: tuple[str, ...], minimal: bool
    ) -> dict[str, Any] | None:
        tomb = self.user_tombs.get(uid)
        if tomb is not None:
            version, reason = tomb
            if after == 0 and version <= upto:  # created and deleted before the first call: not returned
                return None
            return {"id": uid, "@removed": {"reason": reason}}
        user = self.users.get(uid)
        if user is None or not self._changed(uid, after, select):
            return None
        new = self.created.get(uid, 1) > after
        if minimal and not new:
            pv = self.pver.get(uid, {})
            props = [p for p in select if pv.get(p, 0) > after]
            out = {p: user.get(p) for p in props}
        else:  # properties never set are left out
            out = {p: user[p] for p in select if user.get(p) is not None}
        out["id"] = uid
        return out

    def _group_delta(
        self, gid: str, after: int, upto: int, select: tuple[str, ...], minimal: bool
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None]:
        tomb = self.group_tombs.get(gid)
        if tomb is not None:
            version, reason = tomb
            if after == 0 and version <= upto:
                return None, None
            return {"id": gid, "@removed": {"reason": reason}}, None
        group = self.groups.get(gid)
        if group is None or not self._changed(gid, after, select):
            return None, None
        new = self.created.get(gid, 1) > after
        props = [p for p in select if p != "members"]
        if minimal and not new:
            pv = self.pver.get(gid, {})
            out = {p: group.get(p) for p in props if pv.get(p, 0) > after}
        else:
            out = {p: group[p] for p in props if group.get(p) is not None}
        out["id"] = gid
        if "members" not in select:
            return out, None
        members = self._members_delta(gid, after, new=new)
        return out, (members or None)

    def _members_delta(self, gid: str, after: int, *, new: bool) -> list[dict[str, Any]]:
        def ref(mid: str, *, removed: bool = False) -> dict[str, Any]:
            kind = self.kind_of(mid) or USER
            entry: dict[str, Any] = {"@odata.type": kind, "id": mid}
            if removed:
                entry["@removed"] = {"reason": "deleted"}
            return entry

        if new:
            return [ref(m) for m in self.members.get(gid, {}) if self.kind_of(m) is not None]
        last: dict[str, bool] = {}
        for version, mid, added in self.mlog.get(gid, []):
            if version > after:
                last[mid] = added
        current = self.members.get(gid, {})
        out = []
        for mid, added in last.items():
            if added and mid in current and self.kind_of(mid) is not None:
                out.append(ref(mid))
            elif not added and mid not in current:
                out.append(ref(mid, removed=True))
        return out

    # ---- snapshot ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The current data in the fixture format (live objects only)."""
        return {
            "users": [copy.deepcopy(u) for u in self.users.values()],
            "groups": [
                {
                    **copy.deepcopy(g),
                    "members": [m for m in self.members.get(gid, {}) if self.kind_of(m) is not None],
                }
                for gid, g in self.groups.items()
            ],
        }


def _not_found(object_id: str) -> str:
    return f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."


def project_user(user: dict[str, Any], select: tuple[str, ...]) -> dict[str, Any]:
    """A user as a collection read returns it: selected properties, unset ones as null (lists as [])."""
    out: dict[str, Any] = {}
    for p in select:
        value = user.get(p)
        if value is None and p in _LIST_USER_PROPERTIES:
            value = []
        out[p] = value
    if "id" not in out:
        out["id"] = user["id"]
    return out
