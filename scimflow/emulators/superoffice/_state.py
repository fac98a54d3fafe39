"""The emulated tenant: users, persons, reference lists and licences, with the indexes that keep it fast.

Not thread-safe by itself: :class:`~scimflow.emulators.superoffice.SuperOfficeEmulator` holds the lock.

Storage choices (they keep ``snapshot()`` equal to the fixture for untouched data):

- A user is stored as its carrier's own fields (``AssociateId``, ``Name``, ``UserName``, ``Type``,
  ``Deleted``, ``Role``, ``UserGroup``, ``OtherGroups``) plus the *set of assigned licences*; the person is
  stored once, by ``PersonId``, and rendered into the user carrier (``Person``) and the Person entity
  (``Emails``/``MobilePhones``/``Contact``) on the way out.
- The licence catalogue is the fixture's ``userplans`` (user-plan licences, ``ExtraFlags`` 1, in that
  order), then ``visible-for`` ("Confidential activities"), then any other licence a user holds. ``GET
  User/{id}`` lists every catalogue licence with its ``Assigned`` flag, as SuperOffice does; the snapshot
  lists only assigned ones, as the fixture does.

The module is longer than the project's ~500 lines on purpose: it is the one emulated tenant, and its
loading, rendering (carriers, archive columns) and writes all share its indexes (users by id, by
``UserName`` and ``Name``, persons, licences), which every write must keep in step; they read best side
by side. The routes live in :mod:`._app`, archive query parsing in :mod:`._archive`, JSON Patch in
:mod:`._patch`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from scimflow.emulators.superoffice._archive import Clause, check_ops, matches, parse_filter

__all__ = ["ApiError", "FixtureError", "Tenant"]

NO_PLAN = "superlicense-no-selection"
CONFIDENTIAL = "visible-for"
OWNER_NAME = "SuperOffice"
OWNER_DESCRIPTION = "SuperOffice CRM"
USER_TYPES = ("InternalAssociate", "ResourceAssociate", "ExternalAssociate", "AnonymousAssociate", "SystemAssociate")
_USER_KEYS = ("AssociateId", "Name", "UserName", "Type", "Deleted", "Role", "UserGroup", "OtherGroups")
_SKIP_USER_KEYS = frozenset((*_USER_KEYS, "LicenseOwners", "Person"))
_PERSON_KEYS = ("PersonId", "Firstname", "Lastname", "Email", "Title", "MobilePhone", "ContactId")


class ApiError(Exception):
    """An error answer: HTTP status and SuperOffice's ``{"Error", "ErrorType"}`` body."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class FixtureError(ValueError):
    """Tenant data a real SuperOffice could never hold (e.g. two users with one ``Name`` or ``UserName``)."""


def _clone(v: Any) -> Any:
    """A copy of JSON data (several times faster than ``copy.deepcopy`` for these small carriers)."""
    if isinstance(v, dict):
        return {k: _clone(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clone(x) for x in v]
    return v


def _blank(v: Any) -> Any:
    return None if v == "" else v


def _check_unique_keys(users: Iterable[dict[str, Any]]) -> None:
    """Refuse users sharing a ``Name`` (User ID) or a ``UserName`` (case-insensitively, as SuperOffice does)."""
    problems: list[str] = []
    for key in ("Name", "UserName"):
        holders: dict[str, list[str]] = {}
        for n, u in enumerate(users):
            value = u.get(key)
            if isinstance(value, str) and value.strip():
                holders.setdefault(value.casefold(), []).append(f"users[{n}] (AssociateId {u.get('AssociateId')})")
        problems += [
            f"{key} {value!r} is held by {', '.join(who)}" for value, who in sorted(holders.items()) if len(who) > 1
        ]
    if problems:
        raise FixtureError(
            "tenant data refused: a SuperOffice user's Name (User ID) and UserName are unique; " + "; ".join(problems)
        )


class Tenant:
    """Data plus indexes (by id, by lower-case UserName, by lower-case Name, person → user)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.roles: dict[int, str] = {int(r["Id"]): r["Value"] for r in data.get("roles", [])}
        self.groups: dict[int, str] = {int(g["Id"]): g["Value"] for g in data.get("usergroups", [])}
        self.contacts: dict[int, str] = {int(c["ContactId"]): c["Name"] for c in data.get("contacts", [])}
        self.userplans: list[dict[str, str]] = [
            {"Name": p["Name"], "Description": p["Description"]} for p in data.get("userplans", [])
        ]
        self.licences: dict[str, dict[str, Any]] = {}
        for p in self.userplans:
            self._add_licence(p["Name"], p["Description"], extra_flags=1)
        self._add_licence(CONFIDENTIAL, "Confidential activities", extra_flags=0)
        self.users: dict[int, dict[str, Any]] = {}
        self.persons: dict[int, dict[str, Any]] = {}
        self.person_user: dict[int, int] = {}
        self.by_username: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        self.sorted_ids: list[int] = []
        for p in data.get("persons", []):  # orphan persons a snapshot carried
            self._store_person(p)
        for u in data.get("users", []):
            self._load_user(u)
        _check_unique_keys(data.get("users", []))
        self.sorted_ids = sorted(self.users)
        self.next_associate_id = max(self.users, default=0) + 1
        self.next_person_id = max(self.persons, default=0) + 1

    # ------------------------------------------------------------------ loading
    def _add_licence(self, name: str, description: str, *, extra_flags: int, unrestricted: bool = False) -> None:
        if name not in self.licences:
            self.licences[name] = {
                "ModuleLicenseId": len(self.licences) + 1,
                "Name": name,
                "Description": description,
                "ExtraFlags": extra_flags,
                "SortOrder": len(self.licences) + 1,
                "Unrestricted": unrestricted,
            }

    def _store_person(self, p: dict[str, Any]) -> int:
        pid = int(p["PersonId"])
        rec = {k: p.get(k) for k in _PERSON_KEYS}
        rec["PersonId"] = pid
        rec["Retired"] = bool(p.get("Retired", False))
        rec["_keys"] = [k for k in p if k not in _PERSON_KEYS]  # extra keys kept for the snapshot
        rec["_extra"] = {k: _clone(p[k]) for k in p if k not in _PERSON_KEYS and k != "Retired"}
        self.persons[pid] = rec
        return pid

    def _load_user(self, u: dict[str, Any]) -> None:
        aid = int(u["AssociateId"])
        assigned: list[str] = []
        for owner in u.get("LicenseOwners") or []:
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
                for lic in owner.get(kind) or []:
                    self._add_licence(
                        lic["Name"],
                        lic.get("Description") or lic["Name"],
                        extra_flags=int(lic.get("ExtraFlags", 0) or 0),
                        unrestricted=kind == "UnrestrictedModuleLicenses",
                    )
                    if lic.get("Assigned"):
                        assigned.append(lic["Name"])
        rec: dict[str, Any] = {k: _clone(u.get(k)) for k in _USER_KEYS}
        rec["AssociateId"] = aid
        rec["Deleted"] = bool(u.get("Deleted", False))
        rec["OtherGroups"] = rec["OtherGroups"] or []
        rec["_assigned"] = set(assigned)
        rec["_extra"] = {k: _clone(v) for k, v in u.items() if k not in _SKIP_USER_KEYS}
        person = u.get("Person")
        rec["_person"] = self._store_person(person) if person else None
        self._index_user(rec)

    def _index_user(self, rec: dict[str, Any]) -> None:
        aid = rec["AssociateId"]
        self.users[aid] = rec
        if rec.get("UserName"):
            self.by_username[str(rec["UserName"]).casefold()] = aid
        if rec.get("Name"):
            self.by_name[str(rec["Name"]).casefold()] = aid
        if rec["_person"] is not None:
            self.person_user[rec["_person"]] = aid

    # ------------------------------------------------------------------ rendering
    def _licence_link(self, name: str, assigned: bool) -> dict[str, Any]:
        lic = self.licences[name]
        return {
            "ModuleLicenseId": lic["ModuleLicenseId"],
            "Name": name,
            "Description": lic["Description"],
            "Assigned": assigned,
            "CanAssign": True,
            "IsHidden": False,
            "ExtraFlags": lic["ExtraFlags"],
            "SortOrder": lic["SortOrder"],
            "Unrestricted": lic["Unrestricted"],
            "PrerequisiteModuleName": "",
            "Tooltip": lic["Description"],
        }

    def licence_owners(self, assigned: set[str], *, full: bool) -> list[dict[str, Any]]:
        """The ``LicenseOwners`` array: every catalogue licence (``full``) or only the assigned ones."""
        restricted: list[dict[str, Any]] = []
        unrestricted: list[dict[str, Any]] = []
        for name, lic in self.licences.items():
            on = name in assigned
            if not (full or on):
                continue
            item = (
                self._licence_link(name, on)
                if full
                else {"Name": name, "Description": lic["Description"], "Assigned": True}
            )
            (unrestricted if lic["Unrestricted"] else restricted).append(item)
        return [
            {
                "Name": OWNER_NAME,
                "Description": OWNER_DESCRIPTION,
                "RestrictedModuleLicenses": restricted,
                "UnrestrictedModuleLicenses": unrestricted,
            }
        ]

    def person_carrier(self, pid: int | None, *, full: bool) -> dict[str, Any] | None:
        """The Person carrier inside a User carrier (fixture keys; ``full`` adds documented extras)."""
        if pid is None or pid not in self.persons:
            return None
        p = self.persons[pid]
        out: dict[str, Any] = {k: p[k] for k in _PERSON_KEYS}
        out.update(p["_extra"])
        if full:
            cid = p["ContactId"]
            out["ContactName"] = self.contacts.get(cid, "") if cid else ""
            out["FullName"] = " ".join(x for x in (p["Firstname"], p["Lastname"]) if x)
            out["Retired"] = p["Retired"]
            out["AssociateId"] = self.person_user.get(pid, 0)
        elif p["Retired"] or "Retired" in p["_keys"]:
            out["Retired"] = p["Retired"]
        return out

    def user_carrier(self, aid: int, *, full: bool = True) -> dict[str, Any]:
        """A user as ``GET /api/v1/User/{id}`` returns it (``full``) or as the fixture stores it."""
        rec = self.users[aid]
        out: dict[str, Any] = {k: _clone(rec[k]) for k in _USER_KEYS}
        out.update(_clone(rec["_extra"]))
        out["LicenseOwners"] = self.licence_owners(rec["_assigned"], full=full)
        out["Person"] = self.person_carrier(rec["_person"], full=full)
        if full:
            p = self.persons.get(rec["_person"]) if rec["_person"] is not None else None
            out.setdefault("Rank", 0)
            out.setdefault("Tooltip", "")
            out.setdefault("EjUserId", 0)
            out["IsPersonRetired"] = bool(p and p["Retired"])
            out.setdefault("Credentials", [])
        return out

    def person_entity(self, pid: int) -> dict[str, Any]:
        """A person as ``GET /api/v1/Person/{id}`` returns it (the PersonEntity shape)."""
        p = self.persons[pid]
        cid = p["ContactId"] or 0
        return {
            "PersonId": pid,
            "Firstname": p["Firstname"],
            "Lastname": p["Lastname"],
            "Title": p["Title"],
            "Emails": [{"Value": p["Email"], "Description": ""}] if p["Email"] else [],
            "MobilePhones": [{"Value": p["MobilePhone"], "Description": ""}] if p["MobilePhone"] else [],
            "Contact": {"ContactId": cid, "Name": self.contacts.get(cid, "")} if cid else None,
            "Retired": p["Retired"],
            "FullName": " ".join(x for x in (p["Firstname"], p["Lastname"]) if x),
        }

    def snapshot(self) -> dict[str, Any]:
        """The whole tenant in the fixture format (S.json); orphan persons, if any, under ``persons``."""
        out: dict[str, Any] = {
            "users": [self.user_carrier(aid, full=False) for aid in self.sorted_ids],
            "roles": [{"Id": k, "Value": v} for k, v in self.roles.items()],
            "usergroups": [{"Id": k, "Value": v} for k, v in self.groups.items()],
            "userplans": _clone(self.userplans),
            "contacts": [{"ContactId": k, "Name": v} for k, v in self.contacts.items()],
        }
        orphans = [pid for pid in sorted(self.persons) if pid not in self.person_user]
        if orphans:
            out["persons"] = [self.person_carrier(pid, full=False) for pid in orphans]
        return out

    # ------------------------------------------------------------------ archives
    def _user_column(self, rec: dict[str, Any], column: str) -> Any:
        col = column.lower()
        pid = rec["_person"]
        p = self.persons.get(pid) if pid is not None else None
        if col.startswith("superoffice_"):
            return column[len("superoffice_") :] in rec["_assigned"]
        if col == "associatedbid":
            return rec["AssociateId"]
        if col == "assocname":
            return rec["Name"]
        if col == "username":
            return rec["UserName"]
        if col == "assoctype":
            return rec["Type"]
        if col == "isactive":
            return not rec["Deleted"]
        if col == "canlogin":
            return not rec["Deleted"] and bool(rec["_assigned"])
        if col == "role":
            return (rec["Role"] or {}).get("Value")
        if col == "usergroup":
            return (rec["UserGroup"] or {}).get("Value")
        if col == "usergroupid":
            return (rec["UserGroup"] or {}).get("Id")
        if col == "othergroups":
            return ",".join(str(g.get("Value", "")) for g in rec["OtherGroups"])
        if col == "userplan":
            for plan in self.userplans:
                if plan["Name"] in rec["_assigned"]:
                    return plan["Description"]
            return ""
        if col == "personid":
            return pid or 0
        return self._person_column(p, column, prefix_email="personemail")

    def _person_column(self, p: dict[str, Any] | None, column: str, *, prefix_email: str = "email/emailaddress") -> Any:
        col = column.lower()
        if p is None:
            return None
        if col == "personid":
            return p["PersonId"]
        if col in (prefix_email, "personemail", "email/emailaddress"):
            return p["Email"]
        if col == "firstname":
            return p["Firstname"]
        if col == "lastname":
            return p["Lastname"]
        if col == "title":
            return p["Title"]
        if col == "fullname":
            return " ".join(x for x in (p["Firstname"], p["Lastname"]) if x)
        if col == "contactid":
            return p["ContactId"] or 0
        if col == "contactname":
            return self.contacts.get(p["ContactId"] or 0, "")
        if col in ("mobilephone/formattednumber", "personmobilephone/formattednumber", "mobilephone"):
            return p["MobilePhone"]
        if col in ("personretired", "retired"):
            return p["Retired"]
        return None

    def archive(
        self, provider: str, select: list[str], filter_text: str | None, skip: int, top: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of an archive: ``(rows, more)``. Providers: ``AllUsers``, ``Person``, ``Contact``."""
        clauses = parse_filter(filter_text)
        check_ops(clauses)
        prov = provider.lower()
        if prov in ("allusers", "user"):
            keys = self._candidates("users", clauses, lambda: self.sorted_ids)
            recs: Callable[[int], Any] = self.users.__getitem__
            getter: Callable[[Any, str], Any] = self._user_column
            pk, entity = "associateDbId", "associate"
        elif prov in ("person", "findperson"):
            keys = self._candidates("persons", clauses, lambda: sorted(self.persons))
            recs = self.persons.__getitem__
            getter = self._person_column
            pk, entity = "personId", "person"
        elif prov in ("contact", "findcontact"):
            keys = self._candidates("contacts", clauses, lambda: sorted(self.contacts))
            recs = self._contact_row
            getter = self._contact_column
            pk, entity = "contactId", "contact"
        else:
            raise ApiError(404, f"unknown archive provider {provider}", "ArchiveProviderNotFound")
        if not clauses:  # unfiltered: page by slicing the sorted key list (O(page), not O(skip))
            keys = list(keys)[skip : skip + top + 1] if not isinstance(keys, list) else keys[skip : skip + top + 1]
            skip = 0
        rows: list[dict[str, Any]] = []
        more = False
        seen = 0
        for key in keys:
            rec = recs(key)
            if clauses and not matches(clauses, lambda c, r=rec: getter(r, c)):  # type: ignore[misc]
                continue
            if seen < skip:
                seen += 1
                continue
            if len(rows) == top:
                more = True
                break
            row: dict[str, Any] = {"PrimaryKey": key, "EntityName": entity}
            for col in select:
                row[col] = getter(rec, col)
            row.setdefault(pk, key)
            rows.append(row)
        return rows, more

    def _contact_row(self, cid: int) -> dict[str, Any]:
        return {"contactId": cid, "name": self.contacts[cid]}

    @staticmethod
    def _contact_column(rec: dict[str, Any], column: str) -> Any:
        col = column.lower()
        if col == "contactid":
            return rec["contactId"]
        return rec["name"] if col in ("name", "namedepartment") else None

    def _candidates(self, provider: str, clauses: list[Clause], ordered: Callable[[], Iterable[int]]) -> Iterable[int]:
        """Narrow the scan with an index where a clause allows it; every clause is still checked after."""
        for c in clauses:
            col = c.column.lower()
            if c.op not in ("oneof", "eq", "equals", "is"):
                continue
            wanted = c.value if c.op == "oneof" else {c.value.casefold() if isinstance(c.value, str) else c.value}
            if provider == "users" and col == "associatedbid":
                return sorted(k for k in wanted if isinstance(k, int) and k in self.users)
            if provider == "users" and col == "username":
                return sorted({self.by_username[k] for k in wanted if isinstance(k, str) and k in self.by_username})
            if provider == "users" and col == "personid":
                return sorted(self.person_user[k] for k in wanted if isinstance(k, int) and k in self.person_user)
            if provider == "persons" and col == "personid":
                return sorted(k for k in wanted if isinstance(k, int) and k in self.persons)
            if provider == "contacts" and col == "contactid":
                return sorted(k for k in wanted if isinstance(k, int) and k in self.contacts)
        return ordered()

    # ------------------------------------------------------------------ writes
    def _ref(self, value: Any, table: dict[int, str], what: str) -> dict[str, Any] | None:
        """Resolve a Role / UserGroup object by ``Id`` (the Web API keys on the id; ``Value`` is display)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ApiError(400, f"{what} must be an object", "ValidationError")
        vid = next((value[k] for k in value if k.lower() == "id"), None)
        if vid is None or int(vid) not in table:
            raise ApiError(400, f"unknown {what} id {vid}", "ValidationError")
        return {"Id": int(vid), "Value": table[int(vid)]}

    @staticmethod
    def _field(doc: dict[str, Any], name: str, default: Any = None) -> Any:
        low = name.lower()
        for k, v in doc.items():
            if k.lower() == low:
                return v
        return default

    def _assigned_from(self, doc: dict[str, Any]) -> set[str]:
        assigned: set[str] = set()
        for owner in self._field(doc, "LicenseOwners") or []:
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
                for lic in self._field(owner, kind) or []:
                    name = self._field(lic, "Name")
                    if name not in self.licences:
                        raise ApiError(400, f"unknown module licence {name}", "ValidationError")
                    if self._field(lic, "Assigned"):
                        assigned.add(name)
        return assigned

    def _check_unique(self, aid: int, user_name: Any, name: Any) -> None:
        if not user_name or not isinstance(user_name, str):
            raise ApiError(400, "UserName is required", "ValidationError")
        if not name or not isinstance(name, str):
            raise ApiError(400, "Name (User ID) is required", "ValidationError")
        other = self.by_username.get(user_name.casefold())
        if other is not None and other != aid:
            raise ApiError(400, "UserName is already in use", "DuplicateUserName")
        other = self.by_name.get(name.casefold())
        if other is not None and other != aid:
            raise ApiError(400, "Name (User ID) is already in use", "DuplicateName")

    def save_user(self, aid: int, doc: dict[str, Any]) -> dict[str, Any]:
        """Store a whole User carrier (PUT, or the result of a PATCH) for an existing user."""
        rec = self.users[aid]
        user_name = self._field(doc, "UserName")
        name = self._field(doc, "Name")
        self._check_unique(aid, user_name, name)
        role = self._ref(self._field(doc, "Role"), self.roles, "role")
        group = self._ref(self._field(doc, "UserGroup"), self.groups, "user group")
        others = [self._ref(g, self.groups, "user group") for g in (self._field(doc, "OtherGroups") or [])]
        assigned = self._assigned_from(doc)
        self.by_username.pop(str(rec["UserName"] or "").casefold(), None)
        self.by_name.pop(str(rec["Name"] or "").casefold(), None)
        rec.update(
            {
                "UserName": user_name,
                "Name": name,
                "Role": role,
                "UserGroup": group,
                "OtherGroups": [g for g in others if g],
                "_assigned": assigned,
                "Deleted": bool(self._field(doc, "Deleted", rec["Deleted"])),
            }
        )
        self._index_user(rec)
        return self.user_carrier(aid)

    def default_user(self, user_type: str, person_id: int) -> dict[str, Any]:
        """``GET User/Default``: a template with every licence unassigned and the first role and group."""
        if user_type not in USER_TYPES:
            raise ApiError(400, f"unknown userType {user_type}", "ValidationError")
        if person_id and person_id not in self.persons:
            raise ApiError(404, f"person {person_id} not found", "NotFound")
        role_id = next(iter(self.roles), None)
        group_id = next(iter(self.groups), None)
        return {
            "AssociateId": 0,
            "Name": "",
            "UserName": "",
            "Type": user_type,
            "Deleted": False,
            "Role": {"Id": role_id, "Value": self.roles[role_id]} if role_id is not None else None,
            "UserGroup": {"Id": group_id, "Value": self.groups[group_id]} if group_id is not None else None,
            "OtherGroups": [],
            "LicenseOwners": self.licence_owners(set(), full=True),
            "Person": self.person_carrier(person_id or None, full=True),
            "Rank": 0,
            "Tooltip": "",
            "EjUserId": 0,
            "IsPersonRetired": False,
            "Credentials": [],
        }

    def create_user(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST User``: internal and external users need an existing person that is not yet a user."""
        user_type = self._field(doc, "Type") or "InternalAssociate"
        if user_type not in USER_TYPES:
            raise ApiError(400, f"unknown user type {user_type}", "ValidationError")
        person = self._field(doc, "Person") or {}
        pid = self._field(person, "PersonId") if isinstance(person, dict) else None
        pid = int(pid) if pid else None
        if user_type in ("InternalAssociate", "ExternalAssociate"):
            if pid is None or pid not in self.persons:
                raise ApiError(400, "an internal or external user needs an existing person", "ValidationError")
            if pid in self.person_user:
                raise ApiError(400, "the person is already a user", "ValidationError")
        aid = self.next_associate_id
        self._check_unique(aid, self._field(doc, "UserName"), self._field(doc, "Name"))
        rec: dict[str, Any] = {
            "AssociateId": aid,
            "Name": None,
            "UserName": None,
            "Type": user_type,
            "Deleted": False,
            "Role": None,
            "UserGroup": None,
            "OtherGroups": [],
            "_assigned": set(),
            "_extra": {},
            "_person": pid,
        }
        self.users[aid] = rec
        try:
            self.save_user(aid, doc)
        except ApiError:
            del self.users[aid]
            raise
        self.next_associate_id += 1
        bisect.insort(self.sorted_ids, aid)
        return self.user_carrier(aid)

    def create_person(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST Person`` (PersonEntity shape: ``Emails``/``MobilePhones``/``Contact``)."""
        pid = self.next_person_id
        self.persons[pid] = {
            "PersonId": pid,
            "Firstname": None,
            "Lastname": None,
            "Email": None,
            "Title": None,
            "MobilePhone": None,
            "ContactId": None,
            "Retired": False,
            "_keys": [],
            "_extra": {},
        }
        try:
            self.save_person(pid, doc)
        except ApiError:
            del self.persons[pid]
            raise
        self.next_person_id += 1
        return self.person_entity(pid)

    def save_person(self, pid: int, doc: dict[str, Any]) -> dict[str, Any]:
        """Store a PersonEntity (PUT, or the result of a PATCH)."""
        p = self.persons[pid]
        contact = self._field(doc, "Contact")
        cid = None
        if isinstance(contact, dict):
            cid = self._field(contact, "ContactId")
            cid = int(cid) if cid else None
            if cid is not None and cid not in self.contacts:
                raise ApiError(400, f"unknown contact {cid}", "ValidationError")

        def first_value(items: Any) -> Any:
            if isinstance(items, list) and items and isinstance(items[0], dict):
                return _blank(self._field(items[0], "Value"))
            return None

        p.update(
            {
                "Firstname": _blank(self._field(doc, "Firstname")),
                "Lastname": _blank(self._field(doc, "Lastname")),
                "Title": _blank(self._field(doc, "Title")),
                "Email": first_value(self._field(doc, "Emails")),
                "MobilePhone": first_value(self._field(doc, "MobilePhones")),
                "ContactId": cid,
                "Retired": bool(self._field(doc, "Retired", p["Retired"])),
            }
        )
        return self.person_entity(pid)

    def make_retired(self, aid: int, retired: bool) -> None:
        """``MakeRetired``: retire = remove all licences, ``Deleted`` and the person retired; un-retire reverses the flags."""
        rec = self.users[aid]
        if retired:
            rec["_assigned"] = set()
        rec["Deleted"] = retired
        pid = rec["_person"]
        if pid is not None and pid in self.persons:
            self.persons[pid]["Retired"] = retired

    def remove_licenses(self, aid: int) -> None:
        self.users[aid]["_assigned"] = set()
