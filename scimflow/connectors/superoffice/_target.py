"""The SuperOffice target: bulk reads into SO_SCHEMA frames, reference lists, and idempotent writes.

Endpoints and the choices made where the API references are silent (ARCHITECTURE.md "decisions"):

Reads (never one request per user)
    - Users: ``GET /api/v1/User`` — the OData list over the ``AllUsers`` archive. It is the one user read
      SuperOffice does *not* mark Online-restricted (reference §0), so reads keep working on tenants
      where the User agent is closed. ``$select`` = the §3 columns below, ``$orderBy=associateDbId``,
      ``$top=1000``; the next page is ``odata.nextLink`` when the server sends one (only followed on the
      Web API's own origin, so the ticket never leaves it), else ``$skip``. Retired users are included.
    - Columns: ``associateDbId assocName userName assocType isActive personId personEmail firstName
      lastName title contactId contactName role usergroup otherGroups`` and one ``superoffice_<licence>``
      boolean per user-plan licence plus ``superoffice_visible-for``. ``role``/``usergroup`` are display
      names, ``otherGroups`` a comma-separated list of names (a group name containing a comma cannot be
      told apart; SuperOffice's list has no other separator). ``retired`` is ``not isActive`` (the archive
      has no ``Deleted`` column; MakeRetired clears the login). Booleans are accepted as JSON booleans or
      as ``"1"/"0"/"True"/"False"/"[I:1]"`` display strings; ``assocType`` as the enum name or its number.
    - Mobile phone is not an AllUsers column: it is read through ``GET /api/v1/Person`` (the person
      archive) with ``$filter=personId oneOf(...)`` in chunks of 500 ids, column
      ``mobilePhone/formattedNumber``.
    - Reference lists: roles and groups from ``GET /api/v1/MDOList/roles`` and ``/MDOList/usergroup``
      (flattened, ``Id``/``Name``); user plans from the licence catalogue of
      ``GET /api/v1/User/Default?userType=InternalAssociate&personId=0`` — the module licences whose
      ``ExtraFlags`` has bit 1 (the user-plan flag, reference §3), in ``SortOrder``, ``Name`` → licence,
      ``Description`` → display name; companies from ``GET /api/v1/Contact`` (``contactId``, ``name``).
      ``superlicense-no-selection`` ("Not selected") stays in the plans list and means *no plan*.

Frame values: ``user_plan`` = the description of the first assigned plan licence in the plans' order,
``None`` when that is ``superlicense-no-selection`` or none is assigned; ``confidential`` =
``visible-for`` assigned; empty strings and ``0`` ids are ``None``.

Writes (each idempotent, each guarded against drift)
    - ``create_user``: first the ``UserName`` — looked up here, or given by the caller from one
      ``find_by_user_names`` read (``userName oneOf``) for a whole batch of creates; an internal user with
      that ``UserName`` is the result of an earlier attempt and is returned as is (no second person either);
      any other user type is a :class:`PayloadError`. When the caller says an earlier attempt may have been
      interrupted (``retry=True``, the default; the apply engine passes ``False`` for rows its journal has
      never seen), a person under the owner company is reused if that attempt left one behind (same e-mail
      — or first+last name when there is no e-mail — under the same contact, not yet a user). Else
      ``POST /api/v1/Person`` (``Firstname``, ``Lastname``, ``Title``, ``Emails[{Value}]``,
      ``MobilePhones[{Value}]``, ``Contact{ContactId}``). The ``User/Default?userType=InternalAssociate``
      template is read once per target (``personId=0``; it is the same for every internal user) and copied;
      ``Person`` (``PersonId`` and the person's fields) is filled in here. Then ``Name`` (initials, made
      unique with a number against the names read as taken — ``assocName begins`` per initials, or every
      name once for a batch with many initials, see ``prepare_names`` — and against names this target
      claimed), ``UserName``, ``Role``/``UserGroup``/``OtherGroups`` (by ``Id``), the plan and
      ``visible-for`` licences' ``Assigned``, and ``POST /api/v1/User``. A ``Name`` taken meanwhile is
      refused (``DuplicateName``) and retried with the next number.
    - ``update_user``: given the engine's bulk-read record (``current=``), changes of person fields and
      ``user_name`` are patched straight away with ``test`` ops of the values that read returned (no
      ``GET``; a failed test falls back to the path below). Otherwise: ``GET User/{id}``; every ``from`` is
      compared with it first (``user_name``/``email``
      case-insensitively, lists as sets) and a mismatch is a :class:`ConflictError` before anything is
      written. Then ``PATCH User/{id}`` and ``PATCH Person/{id}`` with JSON Patch: a ``test`` of the value
      read before each ``replace``, so a change racing the write answers 409 → :class:`ConflictError`.
      Licence changes test and replace ``LicenseOwners/i/…ModuleLicenses/j/Assigned``. A plan change
      assigns the plan licence and unassigns the other plan licences; ``user_plan`` → ``None`` assigns
      ``superlicense-no-selection``. ``owner_company`` replaces the person's ``Contact``. An ``active``
      change is done with MakeRetired (reactivate before the other changes, retire after them).
    - ``retire`` / ``reactivate``: ``POST /api/v1/Agents/User/MakeRetired {AssociateId, Retired}``.

Thread safety: the ``httpx.Client`` is shared; the ticket cache and the claimed names are lock-guarded, so
an apply engine may call the write methods from several threads.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import polars as pl

from scimflow.config import ConfigError, SuperOfficeConfig
from scimflow.connectors.errors import AuthError, ConflictError, PayloadError, UpstreamError
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, build_client, send
from scimflow.connectors.superoffice._auth import SystemUserAuth
from scimflow.frames import (
    COMPANY_SCHEMA,
    CONFIDENTIAL_LICENSE,
    GROUP_SCHEMA,
    NO_PLAN_LICENSE,
    PLAN_SCHEMA,
    ROLE_SCHEMA,
    SO_SCHEMA,
    Reference,
    conform,
)

__all__ = ["PAGE_SIZE", "SuperOfficeTarget"]

log = logging.getLogger("scimflow.superoffice")

PAGE_SIZE = 1000
ID_CHUNK = 500
#: User names per ``userName oneOf`` request (keeps the request line well under server limits).
USER_NAME_CHUNK = 100
#: More new initials than this in one batch of creates read every ``Name`` once instead of by prefix.
NAME_PREFIX_READS = 4
MOBILE_COLUMN = "mobilePhone/formattedNumber"
USER_PLAN_FLAG = 1
_BASE_COLUMNS = (
    "associateDbId",
    "assocName",
    "userName",
    "assocType",
    "isActive",
    "personId",
    "personEmail",
    "firstName",
    "lastName",
    "title",
    "contactId",
    "contactName",
    "role",
    "usergroup",
    "otherGroups",
)
_USER_TYPES = {
    "1": "InternalAssociate",
    "2": "ResourceAssociate",
    "3": "ExternalAssociate",
    "4": "AnonymousAssociate",
    "5": "SystemAssociate",
}
_TRUE = {"1", "true", "yes", "[i:1]"}
USER_FIELDS = frozenset({"user_name", "role", "primary_group", "secondary_groups", "user_plan", "confidential"})
PERSON_FIELDS = frozenset({"first_name", "last_name", "email", "title", "mobile_phone", "owner_company"})
PLAN_FIELDS = USER_FIELDS | PERSON_FIELDS | {"active"}
#: Fields an update may write without reading the user first (their test values come from a bulk read).
_FAST_FIELDS = frozenset({"user_name", "role", "primary_group", *PERSON_FIELDS})
#: User elements held as a list object (``{"Id", "Value"}``): the fast path tests the ``Id``.
_USER_OBJECTS = {"role": "Role", "primary_group": "UserGroup"}
_CASELESS = frozenset({"user_name", "email"})
_PERSON_SCALARS = {"first_name": "Firstname", "last_name": "Lastname", "title": "Title"}
_PERSON_LISTS = {"email": ("Emails", "Email"), "mobile_phone": ("MobilePhones", "MobilePhone")}


def _q(value: str) -> str:
    """An archive string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _blank(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in _TRUE


def _as_id(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n or None


def _initials(first: Any, last: Any) -> str:
    """A user's ``Name`` (User ID) stem: the initials of first and last name, upper case (``U`` when none)."""
    return re.sub(r"[^A-Za-z0-9]", "", f"{(first or ' ')[:1]}{(last or ' ')[:1]}").upper() or "U"


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _get(obj: Any, name: str) -> Any:
    """A carrier member by name, case-insensitively (the Web API's JSON casing is not guaranteed)."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    low = name.lower()
    return next((v for k, v in obj.items() if k.lower() == low), None)


def _has(obj: Any, name: str) -> bool:
    """Whether a carrier has the member ``name`` at all (case-insensitively), null or not."""
    return isinstance(obj, dict) and (name in obj or any(k.lower() == name.lower() for k in obj))


class _Maps:
    """Name → id lookups for one :class:`Reference` (built once per reference object)."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.roles = dict(zip(ref.roles["name"].to_list(), ref.roles["id"].to_list(), strict=True))
        self.groups = dict(zip(ref.groups["name"].to_list(), ref.groups["id"].to_list(), strict=True))
        self.plans = dict(zip(ref.plans["name"].to_list(), ref.plans["license"].to_list(), strict=True))
        self.plan_order: list[str] = ref.plans["license"].to_list()
        self.plan_names = dict(zip(ref.plans["license"].to_list(), ref.plans["name"].to_list(), strict=True))
        self.companies = dict(zip(ref.companies["name"].to_list(), ref.companies["id"].to_list(), strict=True))
        self.company_names = {v: k for k, v in self.companies.items()}

    def table(self, element: str) -> dict[str, Any]:
        """Display name → id (licence name for ``user_plan``) of an element's list."""
        return {
            "role": self.roles,
            "primary_group": self.groups,
            "secondary_groups": self.groups,
            "user_plan": self.plans,
            "owner_company": self.companies,
        }[element]

    def resolve(self, element: str, name: Any) -> Any:
        table = self.table(element)
        if name not in table:
            raise PayloadError(f"unknown {element.replace('_', ' ')} {name!r}: not in the tenant's list")
        return table[name]

    def plan_of(self, assigned: dict[str, bool]) -> str | None:
        """The display name of the first assigned plan licence in plan order (None for no plan)."""
        for lic in self.plan_order:
            if assigned.get(lic):
                return None if lic == NO_PLAN_LICENSE else self.plan_names[lic]
        return None


class SuperOfficeTarget:
    """Read and write SuperOffice users through the Web API with the system-user flow.

    Example::

        with SuperOfficeTarget(config.superoffice, ca_bundle=config.ca_bundle) as so:
            ref = so.read_reference()
            users = so.read_users()          # SO_SCHEMA, every user type, retired too
    """

    def __init__(
        self,
        config: SuperOfficeConfig,
        *,
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._config = config
        self._policy = policy
        self._base = config.webapi_url.rstrip("/")
        self._login = build_client(
            ca_bundle=ca_bundle, timeout=config.timeout, transport=transport, headers={"Accept": "application/json"}
        )
        self.auth = SystemUserAuth(
            login=self._login,
            login_url=config.login_url,
            context_identifier=config.context_identifier,
            client_id=config.client_id,
            secrets=self._secrets,
            policy=policy,
        )
        self._api = build_client(
            base_url=self._base + "/",
            ca_bundle=ca_bundle,
            timeout=config.timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            auth=self.auth,
            max_connections=max(16, 2 * config.write_concurrency),
        )
        self._names_lock = threading.Lock()
        self._claimed_names: set[str] = set()
        #: ``Name`` values (casefolded) read as taken: for the initials in ``_loaded_prefixes``, or all of them.
        self._taken_names: set[str] = set()
        self._loaded_prefixes: set[str] = set()
        self._all_names_loaded = False
        self._template: dict[str, Any] | None = None
        self._template_lock = threading.Lock()
        self._maps: _Maps | None = None
        self._ref: Reference | None = None
        #: How this server writes an empty person string (``None`` or ``""``; JSON Patch ``test`` tells them
        #: apart), per PersonEntity key, as seen in the first entity read that had one empty.
        self._empty_as: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing
    def _secrets(self) -> tuple[str, str, str]:
        c = self._config
        try:
            return c.client_secret.reveal(), c.system_user_token.reveal(), c.private_key.reveal()
        except ConfigError as exc:  # names the reference, never the value
            raise AuthError(str(exc)) from None

    def close(self) -> None:
        self._api.close()
        self._login.close()

    def __enter__(self) -> SuperOfficeTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, url: str, *, ok: frozenset[int] | None = None, **kwargs: Any) -> httpx.Response:
        return send(self._api, method, url, policy=self._policy, ok_statuses=ok, **kwargs)

    def _json(self, response: httpx.Response, kind: type = dict) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, kind):
            raise PayloadError(
                f"expected a JSON {kind.__name__}",
                method=response.request.method,
                url=response.request.url,
                status=response.status_code,
            )
        return body

    def _pages(
        self, path: str, params: dict[str, Any], *, at_most: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the ``value`` of each page: ``odata.nextLink`` when sent (same origin only), else ``$skip``.

        A server that sends next links ends with a page without one. Otherwise paging stops at an empty
        page or at one shorter than the largest seen (the server may cap ``$top`` below what was asked
        without saying so), or once ``at_most`` rows arrived (an ``oneOf`` filter bounds its result).
        """
        params = {**params, "$top": PAGE_SIZE, "$skip": 0}
        url: str = path
        query: dict[str, Any] | None = params
        origin = urlsplit(self._base)
        page_size = 0  # the largest page seen: a server may cap $top silently, so a short page means the end
        seen = 0
        linked = False  # once the server has sent a next link, its absence means the last page
        while True:
            response = self._send("GET", url, params=query)
            body = self._json(response)
            rows = body.get("value")
            if not isinstance(rows, list):
                raise PayloadError("an archive page has no 'value' list", method="GET", url=response.request.url)
            if path == "api/v1/User":
                for n, r in enumerate(rows):
                    if not isinstance(r, dict) or _as_id(r.get("associateDbId")) is None:
                        bad = str(r.get("associateDbId") if isinstance(r, dict) else r)[:40]
                        raise PayloadError(
                            f"user row {seen + n} has no usable associateDbId ({bad!r})",
                            method="GET",
                            url=response.request.url,
                        )
            yield rows
            seen += len(rows)
            page_size = max(page_size, len(rows))
            next_link = body.get("odata.nextLink")
            if next_link:
                nxt = urlsplit(str(next_link))
                if (nxt.scheme, nxt.netloc) != (origin.scheme, origin.netloc):
                    raise PayloadError(
                        "odata.nextLink points to another origin; refusing to follow it",
                        method="GET",
                        url=response.request.url,
                    )
                url, query, linked = str(next_link), None, True
            elif linked or not rows or len(rows) < page_size or (at_most is not None and seen >= at_most):
                return
            else:
                params["$skip"] = seen
                url, query = path, params

    # ------------------------------------------------------------------ reference lists
    def read_reference(self) -> Reference:
        """Roles, user groups, user plans (licences) and companies of the tenant (see the module docstring).

        The four lists are read side by side (one round trip instead of four, before anything else can start),
        once logged in (a refused login is tried once, not once per list).
        """
        self.auth.ensure_ticket()
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="scimflow-reference") as pool:
            roles_read = pool.submit(self._mdo_list, "roles")
            groups_read = pool.submit(self._mdo_list, "usergroup")
            template_read = pool.submit(
                self._send, "GET", "api/v1/User/Default", params={"userType": "InternalAssociate", "personId": 0}
            )
            companies_read = pool.submit(self._companies)
            roles, groups = roles_read.result(), groups_read.result()
            template = self._json(template_read.result())
            companies = companies_read.result()
        with self._template_lock:
            self._template = copy.deepcopy(template)
        plans: list[tuple[int, str, str]] = []
        for owner in _get(template, "LicenseOwners") or []:
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
                for lic in _get(owner, kind) or []:
                    flags = _as_id(_get(lic, "ExtraFlags")) or 0
                    if flags & USER_PLAN_FLAG:
                        plans.append(
                            (
                                _as_id(_get(lic, "SortOrder")) or 0,
                                str(_get(lic, "Name")),
                                str(_get(lic, "Description") or _get(lic, "Name")),
                            )
                        )
        plans.sort(key=lambda p: p[0])
        ref = Reference(
            roles=pl.DataFrame(roles, schema=ROLE_SCHEMA, orient="row"),
            groups=pl.DataFrame(groups, schema=GROUP_SCHEMA, orient="row"),
            plans=pl.DataFrame([(p[1], p[2]) for p in plans], schema=PLAN_SCHEMA, orient="row"),
            companies=pl.DataFrame(companies, schema=COMPANY_SCHEMA),
        )
        log.info(
            "SuperOffice reference: %d roles, %d groups, %d plans, %d companies",
            ref.roles.height,
            ref.groups.height,
            ref.plans.height,
            ref.companies.height,
        )
        self._ref = ref
        return ref

    def _companies(self) -> list[dict[str, Any]]:
        companies: list[dict[str, Any]] = []
        for rows in self._pages("api/v1/Contact", {"$select": "contactId,name", "$orderBy": "contactId"}):
            companies.extend({"id": _as_id(r.get("contactId")), "name": _blank(r.get("name"))} for r in rows)
        return companies

    def _mdo_list(self, name: str) -> list[tuple[int, str]]:
        items = self._json(self._send("GET", f"api/v1/MDOList/{name}"), list)
        out: list[tuple[int, str]] = []

        def walk(nodes: list[Any]) -> None:
            for node in nodes:
                nid = _as_id(_get(node, "Id"))
                label = _blank(_get(node, "Name"))
                if nid is not None and nid > 0 and label:
                    out.append((nid, label))
                walk(_get(node, "ChildItems") or [])

        walk(items)
        return out

    def _maps_for(self, ref: Reference) -> _Maps:
        maps = self._maps
        if maps is None or maps.ref is not ref:
            maps = _Maps(ref)
            self._maps = maps
        return maps

    # ------------------------------------------------------------------ reads
    def _columns(self, maps: _Maps) -> str:
        licences = [*maps.plan_order, CONFIDENTIAL_LICENSE]
        return ",".join([*_BASE_COLUMNS, *(f"superoffice_{lic}" for lic in dict.fromkeys(licences))])

    def read_users(self) -> pl.DataFrame:
        """Every user (all types, retired included) as an ``SO_SCHEMA`` frame, ordered by associate id."""
        maps = self._maps_for(self._ref or self.read_reference())
        rows: list[dict[str, Any]] = []
        params = {"$select": self._columns(maps), "$orderBy": "associateDbId"}
        for page in self._pages("api/v1/User", params):
            rows.extend(page)
        frame = self._frame(rows, maps)
        log.info("read %d SuperOffice users", frame.height)
        return frame

    def read_users_by_id(self, ids: Sequence[int]) -> pl.DataFrame:
        """The given users as an ``SO_SCHEMA`` frame (bulk ``associateDbId oneOf``, chunked); absent ids are absent."""
        maps = self._maps_for(self._ref or self.read_reference())
        wanted = sorted({int(i) for i in ids})
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(wanted, ID_CHUNK):
            params = {
                "$select": self._columns(maps),
                "$orderBy": "associateDbId",
                "$filter": f"associateDbId oneOf({','.join(map(str, chunk))})",
            }
            for page in self._pages("api/v1/User", params, at_most=len(chunk)):
                rows.extend(page)
        return self._frame(rows, maps)

    def find_by_user_name(self, user_name: str) -> pl.DataFrame:
        """Users whose ``UserName`` equals ``user_name`` (trimmed, case-insensitive), any type."""
        maps = self._maps_for(self._ref or self.read_reference())
        key = user_name.strip()
        params = {"$select": self._columns(maps), "$filter": f"userName eq {_q(key)}"}
        rows = [
            r
            for page in self._pages("api/v1/User", params)
            for r in page
            if str(r.get("userName") or "").strip().casefold() == key.casefold()
        ]
        return self._frame(rows, maps)

    def find_by_user_names(self, user_names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Users holding any of ``user_names`` in bulk (``userName oneOf``, batches read a few in parallel).

        Returns ``{casefolded trimmed UserName: [{"associate_id", "user_type"}, ...]}`` for the names found;
        a name that is absent from the result is not used by any user (of any type) at the time of the read.
        """
        keys = sorted({str(n).strip() for n in user_names if n and str(n).strip()}, key=str.casefold)

        def one(batch: list[str]) -> list[dict[str, Any]]:
            params = {
                "$select": "associateDbId,userName,assocType",
                "$filter": f"userName oneOf({','.join(_q(k) for k in batch)})",
            }
            return [r for page in self._pages("api/v1/User", params, at_most=len(batch)) for r in page]

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
                            "associate_id": _as_id(r.get("associateDbId")),
                            "user_type": _USER_TYPES.get(raw_type, raw_type or None),
                        }
                    )
        return out

    def prepare_names(self, people: Sequence[tuple[Any, Any]]) -> None:
        """Read the taken ``Name`` (User ID) values for these (first, last) names' initials, once per target.

        A few new initials are read with ``assocName begins``; more than :data:`NAME_PREFIX_READS` read every
        name once (later creates of this target then claim names locally). A name taken by someone else
        after the read is refused by the server (``DuplicateName``) and the create moves on to the next one.
        """
        prefixes = {_initials(first, last) for first, last in people}
        with self._names_lock:
            if self._all_names_loaded:
                return
            missing = sorted(prefixes - self._loaded_prefixes)
        if not missing:
            return
        if len(missing) > NAME_PREFIX_READS:
            params = {"$select": "associateDbId,assocName", "$orderBy": "associateDbId"}
            taken = {
                str(r.get("assocName") or "").casefold() for page in self._pages("api/v1/User", params) for r in page
            }
            with self._names_lock:
                self._taken_names |= taken
                self._all_names_loaded = True
            return
        for prefix in missing:
            self._load_prefix(prefix)

    def _load_prefix(self, prefix: str) -> None:
        params = {"$select": "associateDbId,assocName", "$filter": f"assocName begins {_q(prefix)}"}
        taken = {str(r.get("assocName") or "").casefold() for page in self._pages("api/v1/User", params) for r in page}
        with self._names_lock:
            self._taken_names |= taken
            self._loaded_prefixes.add(prefix)

    def _mobiles(self, person_ids: list[int]) -> dict[int, str | None]:
        """Mobile phones by person id, through the person archive in ``oneOf`` chunks (a few in parallel)."""

        def one(chunk: list[int]) -> list[dict[str, Any]]:
            params = {"$select": f"personId,{MOBILE_COLUMN}", "$filter": f"personId oneOf({','.join(map(str, chunk))})"}
            return [r for page in self._pages("api/v1/Person", params, at_most=len(chunk)) for r in page]

        out: dict[int, str | None] = {}
        chunks = list(_chunks(sorted(set(person_ids)), ID_CHUNK))
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="so-persons") as pool:
            for rows in pool.map(one, chunks):
                for r in rows:
                    pid = _as_id(r.get("personId"))
                    if pid is not None:
                        out[pid] = _blank(r.get(MOBILE_COLUMN))
        return out

    def _frame(self, rows: list[dict[str, Any]], maps: _Maps) -> pl.DataFrame:
        person_ids = [pid for r in rows if (pid := _as_id(r.get("personId"))) is not None]
        mobiles = self._mobiles(person_ids) if person_ids else {}
        cols: dict[str, list[Any]] = {name: [] for name in SO_SCHEMA.names()}
        licences = [*maps.plan_order, CONFIDENTIAL_LICENSE]
        for r in rows:
            assigned = {lic: _as_bool(r.get(f"superoffice_{lic}")) for lic in licences}
            pid = _as_id(r.get("personId"))
            raw_type = str(r.get("assocType") or "").strip()
            others = str(r.get("otherGroups") or "")
            values = {
                "associate_id": _as_id(r.get("associateDbId")),
                "name": _blank(r.get("assocName")),
                "user_name": _blank(r.get("userName")),
                "user_type": _USER_TYPES.get(raw_type, raw_type or None),
                "retired": not _as_bool(r.get("isActive")),
                "person_id": pid,
                "first_name": _blank(r.get("firstName")),
                "last_name": _blank(r.get("lastName")),
                "email": _blank(r.get("personEmail")),
                "title": _blank(r.get("title")),
                "mobile_phone": mobiles.get(pid) if pid is not None else None,
                "role": _blank(r.get("role")),
                "primary_group": _blank(r.get("usergroup")),
                "secondary_groups": [g.strip() for g in others.split(",") if g.strip()],
                "owner_company": _blank(r.get("contactName")),
                "contact_id": _as_id(r.get("contactId")),
                "user_plan": maps.plan_of(assigned),
                "confidential": assigned[CONFIDENTIAL_LICENSE],
            }
            for name, value in values.items():
                cols[name].append(value)
        frame = pl.DataFrame(cols, schema=SO_SCHEMA)
        return conform(frame.sort("associate_id"), SO_SCHEMA)

    # ------------------------------------------------------------------ writes: create
    def create_user(
        self,
        fields: dict[str, Any],
        ref: Reference,
        *,
        retry: bool = True,
        existing: Sequence[dict[str, Any]] | None = None,
    ) -> int:
        """Create an internal user (person first) and return its AssociateId; idempotent on ``UserName``.

        ``existing`` is this user name's entry of :meth:`find_by_user_names` read for a batch of creates
        just before (``[]``: not in use); ``None`` looks the name up here. ``retry`` says an earlier attempt
        may have been interrupted between the person and the user (the caller's journal knows this row was
        started before): only then is a person it left behind looked for and reused. The default is the
        safe one for callers that cannot tell.
        """
        maps = self._maps_for(ref)
        unknown = set(fields) - PLAN_FIELDS
        if unknown:
            raise PayloadError(f"create: unknown fields {sorted(unknown)}")
        user_name = _blank(fields.get("user_name"))
        if not user_name:
            raise PayloadError("create: user_name is required")
        role = self._ref_obj(maps, "role", fields.get("role"))
        group = self._ref_obj(maps, "primary_group", fields.get("primary_group"))
        others = [self._ref_obj(maps, "secondary_groups", g) for g in sorted(fields.get("secondary_groups") or [])]
        company = fields.get("owner_company")
        contact_id = int(maps.resolve("owner_company", company)) if company else None
        plan = fields.get("user_plan")
        plan_licence = maps.resolve("user_plan", plan) if plan else None

        if existing is None:
            existing = self.find_by_user_names([user_name]).get(user_name.casefold(), [])
        if existing:
            kinds = sorted({str(u.get("user_type")) for u in existing if u.get("user_type") != "InternalAssociate"})
            if kinds:
                raise PayloadError(
                    f"create: the UserName is already used by a {'/'.join(kinds) or 'non-internal'} "
                    "user; scimflow never takes over system, external or resource users"
                )
            aid = int(existing[0]["associate_id"])
            log.info("create: UserName already exists as internal user %d; treating the create as done", aid)
            return aid

        template = self._user_template()  # checks the licences before anything is written
        template["UserName"] = user_name
        if role is not None:
            template["Role"] = role
        if group is not None:
            template["UserGroup"] = group
        template["OtherGroups"] = others
        wanted = {CONFIDENTIAL_LICENSE: bool(fields.get("confidential"))}
        if plan_licence is not None:
            wanted.update({lic: lic == plan_licence for lic in maps.plan_order})
        self._set_licences(template, wanted)

        orphan = self._find_orphan_person(fields, contact_id) if retry else None
        person_id = orphan or self._create_person(fields, contact_id)
        template["Person"] = {
            "PersonId": person_id,
            "Firstname": _blank(fields.get("first_name")) or "",
            "Lastname": _blank(fields.get("last_name")) or "",
            "Email": _blank(fields.get("email")) or "",
            "Title": _blank(fields.get("title")) or "",
            "MobilePhone": _blank(fields.get("mobile_phone")) or "",
            "ContactId": contact_id or 0,
        }

        for _ in range(5):
            template["Name"] = self._unique_name(fields.get("first_name"), fields.get("last_name"))
            response = self._send("POST", "api/v1/User", json=template, ok=frozenset({400}))
            if response.status_code < 300:
                created = _as_id(_get(self._json(response), "AssociateId"))
                if created is None:
                    raise PayloadError(
                        "create: the created user has no AssociateId", method="POST", url=response.request.url
                    )
                log.info("created SuperOffice user %d", created)
                return created
            err = self._json(response)
            if str(err.get("ErrorType")) != "DuplicateName":
                raise UpstreamError(
                    f"create refused: {str(err.get('Error') or '')[:200]}",
                    method="POST",
                    url=response.request.url,
                    status=400,
                )
        raise UpstreamError("create: could not find a free User ID (Name) after 5 attempts")

    def _user_template(self) -> dict[str, Any]:
        """A copy of the ``User/Default`` template of an internal user (read once per target; no person)."""
        with self._template_lock:
            if self._template is None:
                self._template = self._json(
                    self._send("GET", "api/v1/User/Default", params={"userType": "InternalAssociate", "personId": 0})
                )
            return copy.deepcopy(self._template)

    @staticmethod
    def _ref_obj(maps: _Maps, element: str, name: Any) -> dict[str, Any] | None:
        if name is None:
            return None
        return {"Id": int(maps.resolve(element, name)), "Value": name}

    def _unique_name(self, first: Any, last: Any) -> str:
        """Initials (``KN``), else ``KN2``, ``KN3``…: not read as taken and not claimed by this target.

        Each call claims the name it returns, so a name the server refused (taken meanwhile) is not offered
        again and the next call moves on to the next number.
        """
        initials = _initials(first, last)
        with self._names_lock:
            loaded = self._all_names_loaded or initials in self._loaded_prefixes
        if not loaded:
            self._load_prefix(initials)
        with self._names_lock:
            n = 1
            while True:
                candidate = initials if n == 1 else f"{initials}{n}"
                key = candidate.casefold()
                if key not in self._taken_names and key not in self._claimed_names:
                    break
                n += 1
            self._claimed_names.add(key)
        return candidate

    def _find_orphan_person(self, fields: dict[str, Any], contact_id: int | None) -> int | None:
        """A person an earlier, interrupted create left behind: same e-mail (or name) and contact, not a user."""
        email = _blank(fields.get("email"))
        first, last = _blank(fields.get("first_name")), _blank(fields.get("last_name"))
        if email:
            clauses = [f"email/emailAddress eq {_q(email)}"]
        elif first and last:
            clauses = [f"firstName eq {_q(first)}", f"lastName eq {_q(last)}"]
        else:
            return None
        clauses.append(f"contactId eq {contact_id or 0}")
        params = {
            "$select": "personId,firstName,lastName,email/emailAddress,contactId",
            "$filter": " and ".join(clauses),
            "$orderBy": "personId",
        }
        candidates = [
            pid
            for page in self._pages("api/v1/Person", params)
            for r in page
            if (pid := _as_id(r.get("personId"))) is not None
            and str(_blank(r.get("firstName")) or "").casefold() == str(first or "").casefold()
            and str(_blank(r.get("lastName")) or "").casefold() == str(last or "").casefold()
        ]
        if not candidates:
            return None
        params = {"$select": "associateDbId,personId", "$filter": f"personId oneOf({','.join(map(str, candidates))})"}
        users = {_as_id(r.get("personId")) for page in self._pages("api/v1/User", params) for r in page}
        free = [pid for pid in candidates if pid not in users]
        if free:
            log.info("create: reusing person %d left by an earlier attempt", free[0])
            return free[0]
        return None

    def _create_person(self, fields: dict[str, Any], contact_id: int | None) -> int:
        body: dict[str, Any] = {
            "Firstname": _blank(fields.get("first_name")) or "",
            "Lastname": _blank(fields.get("last_name")) or "",
            "Title": _blank(fields.get("title")) or "",
            "Emails": [{"Value": e}] if (e := _blank(fields.get("email"))) else [],
            "MobilePhones": [{"Value": m}] if (m := _blank(fields.get("mobile_phone"))) else [],
            "Contact": {"ContactId": contact_id} if contact_id else None,
        }
        response = self._send("POST", "api/v1/Person", json=body)
        pid = _as_id(_get(self._json(response), "PersonId"))
        if pid is None:
            raise PayloadError("create: the created person has no PersonId", method="POST", url=response.request.url)
        return pid

    @staticmethod
    def _licence_paths(carrier: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        """Licence name → (JSON Pointer of its ``Assigned``, current value) in a User carrier."""
        out: dict[str, tuple[str, bool]] = {}
        for i, owner in enumerate(_get(carrier, "LicenseOwners") or []):
            for kind in ("RestrictedModuleLicenses", "UnrestrictedModuleLicenses"):
                for j, lic in enumerate(_get(owner, kind) or []):
                    name = str(_get(lic, "Name"))
                    out.setdefault(name, (f"/LicenseOwners/{i}/{kind}/{j}/Assigned", bool(_get(lic, "Assigned"))))
        return out

    def _set_licences(self, carrier: dict[str, Any], wanted: dict[str, bool]) -> None:
        paths = self._licence_paths(carrier)
        for name, on in wanted.items():
            if name not in paths:
                if on:
                    raise PayloadError(f"the licence {name!r} is not available to this user")
                continue
            _, _, i, kind, j, _ = paths[name][0].split("/")
            carrier["LicenseOwners"][int(i)][kind][int(j)]["Assigned"] = on

    # ------------------------------------------------------------------ writes: update
    def update_user(
        self,
        associate_id: int,
        changes: dict[str, dict[str, Any]],
        ref: Reference,
        *,
        current: dict[str, Any] | None = None,
    ) -> None:
        """Apply ``changes`` (``{field: {"from", "to"}}``) with drift checks; :class:`ConflictError` on drift.

        ``current`` is the user's ``SO_SCHEMA`` record from a bulk read just made (the apply engine's drift
        re-read, already compared with every ``from``). With it, person-field and ``user_name`` changes are
        written without the ``GET User/{id}``: the ``test`` ops carry the values of that read, so the server
        still refuses a write over a change made since. Should a test op fail, the change is retried once
        through the ``GET`` path, which tells real drift (:class:`ConflictError`) from a representation
        difference between the archive and the entity (e.g. whitespace).
        """
        maps = self._maps_for(ref)
        unknown = set(changes) - PLAN_FIELDS
        if unknown:
            raise PayloadError(f"update: unknown fields {sorted(unknown)}")
        if current is not None and self._fast_update(associate_id, changes, current, maps):
            return
        self._update_read_first(associate_id, changes, maps)

    def _fast_update(
        self, associate_id: int, changes: dict[str, dict[str, Any]], current: dict[str, Any], maps: _Maps
    ) -> bool:
        """Write ``changes`` guarded by ``test`` ops built from ``current``; False when it cannot (caller reads first).

        Only fields whose entity value follows from the archive value take this path (person scalars,
        e-mail, mobile, owner company, user name; role and primary group, tested by ``Id``). An empty
        e-mail, mobile or owner company tests as an empty collection or a null contact; an empty name or
        title tests as this server writes an empty string (``None`` or ``""``, which differ in a test), once
        an entity read has shown it, and reads first until then.
        """
        if not set(changes) <= _FAST_FIELDS:
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
                if _blank(current.get(field)) is None or _blank(change.get("from")) is None:
                    return False
            elif field in _USER_OBJECTS and (current.get(field) not in maps.table(field) or change.get("to") is None):
                return False
            elif field in _PERSON_SCALARS and _blank(current.get(field)) is None:
                key = _PERSON_SCALARS[field]
                if key not in self._empty_as:
                    return False
                person[key] = self._empty_as[key]
        person_id = _as_id(current.get("person_id"))
        if set(changes) & PERSON_FIELDS and person_id is None:
            return False
        user_ops: list[dict[str, Any]] = []
        if "user_name" in changes:
            user_ops += [
                {"op": "test", "path": "/UserName", "value": current.get("user_name")},
                {"op": "replace", "path": "/UserName", "value": _blank(changes["user_name"].get("to"))},
            ]
        for field, key in _USER_OBJECTS.items():
            if field in changes:
                user_ops += [
                    {"op": "test", "path": f"/{key}/Id", "value": int(maps.resolve(field, current.get(field)))},
                    {"op": "replace", "path": f"/{key}", "value": self._ref_obj(maps, field, changes[field].get("to"))},
                ]
        person_ops = self._person_ops(changes, person, maps)
        url = f"api/v1/User/{int(associate_id)}"
        person_changes = {f: c for f, c in changes.items() if f in PERSON_FIELDS}
        if user_ops:
            try:
                self._patch(url, user_ops)
            except ConflictError:
                self._update_read_first(associate_id, changes, maps)
                return True
        if person_ops:
            try:
                self._patch(f"api/v1/Person/{person_id}", person_ops)
            except ConflictError:
                self._update_read_first(associate_id, person_changes, maps)
                return True
        log.info("updated SuperOffice user %d (%s)", associate_id, ", ".join(sorted(changes)))
        return True

    def _update_read_first(self, associate_id: int, changes: dict[str, dict[str, Any]], maps: _Maps) -> None:
        """``GET User/{id}``, compare every ``from``, then PATCH with ``test`` ops of the values read."""
        url = f"api/v1/User/{int(associate_id)}"
        current = self._json(self._send("GET", url))
        person = _get(current, "Person") or {}
        for key in _PERSON_SCALARS.values():
            value = _get(person, key)
            if value in (None, "") and key not in self._empty_as and _has(person, key):
                self._empty_as[key] = value
        licences = self._licence_paths(current)
        assigned = {name: on for name, (_, on) in licences.items()}
        now = {
            "user_name": _get(current, "UserName"),
            "role": _get(_get(current, "Role"), "Value"),
            "primary_group": _get(_get(current, "UserGroup"), "Value"),
            "secondary_groups": sorted(str(_get(g, "Value")) for g in _get(current, "OtherGroups") or []),
            "user_plan": maps.plan_of(assigned),
            "confidential": assigned.get(CONFIDENTIAL_LICENSE, False),
            "first_name": _get(person, "Firstname"),
            "last_name": _get(person, "Lastname"),
            "email": _get(person, "Email"),
            "title": _get(person, "Title"),
            "mobile_phone": _get(person, "MobilePhone"),
            "owner_company": maps.company_names.get(_as_id(_get(person, "ContactId"))),
            "active": not bool(_get(current, "Deleted")),
        }
        for field, change in changes.items():
            if not self._same(field, now[field], change.get("from")):
                raise ConflictError(
                    f"drift: {field} of user {associate_id} changed since the plan was made",
                    method="GET",
                    url=self._base + "/" + url,
                )

        user_ops: list[dict[str, Any]] = []
        if "user_name" in changes:
            user_ops += [
                {"op": "test", "path": "/UserName", "value": now["user_name"]},
                {"op": "replace", "path": "/UserName", "value": _blank(changes["user_name"].get("to"))},
            ]
        for field, key in (("role", "Role"), ("primary_group", "UserGroup")):
            if field in changes:
                obj = self._ref_obj(maps, field, changes[field].get("to"))
                user_ops += [
                    {"op": "test", "path": f"/{key}", "value": _get(current, key)},
                    {"op": "replace", "path": f"/{key}", "value": obj},
                ]
        if "secondary_groups" in changes:
            groups = [
                self._ref_obj(maps, "secondary_groups", g) for g in sorted(changes["secondary_groups"].get("to") or [])
            ]
            user_ops += [
                {"op": "test", "path": "/OtherGroups", "value": _get(current, "OtherGroups") or []},
                {"op": "replace", "path": "/OtherGroups", "value": groups},
            ]
        wanted: dict[str, bool] = {}
        if "user_plan" in changes:
            to = changes["user_plan"].get("to")
            target = NO_PLAN_LICENSE if to is None else maps.resolve("user_plan", to)
            wanted.update({lic: lic == target for lic in maps.plan_order if lic in licences or lic == target})
        if "confidential" in changes:
            wanted[CONFIDENTIAL_LICENSE] = bool(changes["confidential"].get("to"))
        for name, on in wanted.items():
            if name not in licences:
                if on:
                    raise PayloadError(f"update: the licence {name!r} is not available to user {associate_id}")
                continue
            path, was = licences[name]
            if was != on:
                user_ops += [{"op": "test", "path": path, "value": was}, {"op": "replace", "path": path, "value": on}]

        person_ops = self._person_ops(changes, person, maps)
        person_id = _as_id(_get(person, "PersonId"))
        if person_ops and person_id is None:
            raise PayloadError(f"update: user {associate_id} has no person to change")

        active = changes.get("active")
        if active is not None and active.get("to") is True and now["active"] is False:
            self.reactivate(associate_id)
        if user_ops:
            self._patch(url, user_ops)
        if person_ops:
            self._patch(f"api/v1/Person/{person_id}", person_ops)
        if active is not None and active.get("to") is False and now["active"] is True:
            self.retire(associate_id)
        log.info("updated SuperOffice user %d (%s)", associate_id, ", ".join(sorted(changes)))

    @staticmethod
    def _same(field: str, now: Any, before: Any) -> bool:
        if field == "secondary_groups":
            return set(now or []) == set(before or [])
        if field in ("confidential", "active"):
            return bool(now) == bool(before)
        a, b = _blank(now), _blank(before)
        if field in _CASELESS and isinstance(a, str) and isinstance(b, str):
            return a.casefold() == b.casefold()
        return bool(a == b)

    def _person_ops(
        self, changes: dict[str, dict[str, Any]], person: dict[str, Any], maps: _Maps
    ) -> list[dict[str, Any]]:
        """JSON Patch for ``PATCH /api/v1/Person/{id}`` (PersonEntity paths), a ``test`` before every write."""
        ops: list[dict[str, Any]] = []
        for field, key in _PERSON_SCALARS.items():
            if field in changes:
                ops += [
                    {"op": "test", "path": f"/{key}", "value": _get(person, key)},
                    {"op": "replace", "path": f"/{key}", "value": _blank(changes[field].get("to")) or ""},
                ]
        for field, (collection, carrier_key) in _PERSON_LISTS.items():
            if field not in changes:
                continue
            was, to = _blank(_get(person, carrier_key)), _blank(changes[field].get("to"))
            if was is None:
                ops.append({"op": "test", "path": f"/{collection}", "value": []})
                if to is not None:
                    ops.append({"op": "add", "path": f"/{collection}/-", "value": {"Value": to}})
            else:
                ops.append({"op": "test", "path": f"/{collection}/0/Value", "value": _get(person, carrier_key)})
                ops.append(
                    {"op": "remove", "path": f"/{collection}/0"}
                    if to is None
                    else {"op": "replace", "path": f"/{collection}/0/Value", "value": to}
                )
        if "owner_company" in changes:
            to = changes["owner_company"].get("to")
            ops.append(
                {"op": "test", "path": "/Contact/ContactId", "value": _as_id(_get(person, "ContactId")) or 0}
                if _as_id(_get(person, "ContactId"))
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

    def _patch(self, url: str, ops: list[dict[str, Any]]) -> None:
        response = self._send(
            "PATCH", url, json=ops, ok=frozenset({409, 412}), headers={"Content-Type": "application/json-patch+json"}
        )
        if response.status_code in (409, 412):
            raise ConflictError(
                "drift: the object changed while it was being written (JSON Patch test failed)",
                method="PATCH",
                url=response.request.url,
                status=response.status_code,
            )

    # ------------------------------------------------------------------ writes: retire / reactivate
    def retire(self, associate_id: int) -> None:
        """Retire: MakeRetired removes the licences, marks the user ``Deleted`` and the person retired."""
        self._send("POST", "api/v1/Agents/User/MakeRetired", json={"AssociateId": int(associate_id), "Retired": True})
        log.info("retired SuperOffice user %d", associate_id)

    def reactivate(self, associate_id: int) -> None:
        """Un-retire (``Retired: false``); licences are not restored here: the plan's update re-applies them."""
        self._send("POST", "api/v1/Agents/User/MakeRetired", json={"AssociateId": int(associate_id), "Retired": False})
        log.info("reactivated SuperOffice user %d", associate_id)
