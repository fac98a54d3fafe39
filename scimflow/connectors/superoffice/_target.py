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

Modules (this class only wires them): ``_api`` (requests, JSON, JSON Patch, paging loop), ``_pages`` (one
paginator per archive), ``_values`` (field names, coercions), ``_reference`` (reference lists and their
maps), ``_reads`` (bulk reads into frames), ``_names`` (User ID allocation), ``_creates`` (person + user),
``_patch`` (JSON Patch ops, built once), ``_updates`` (the two update paths, retire / reactivate).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from scimflow.config import ConfigError, SuperOfficeConfig
from scimflow.connectors.errors import AuthError, PayloadError
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, build_client
from scimflow.connectors.superoffice import _creates, _reads, _reference, _updates
from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._auth import SystemUserAuth
from scimflow.connectors.superoffice._names import NameBook
from scimflow.connectors.superoffice._values import PAGE_SIZE, PLAN_FIELDS
from scimflow.frames import Reference

__all__ = ["PAGE_SIZE", "SuperOfficeTarget"]

log = logging.getLogger("scimflow.superoffice")


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
        base = config.webapi_url.rstrip("/")
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
        client = build_client(
            base_url=base + "/",
            ca_bundle=ca_bundle,
            timeout=config.timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            auth=self.auth,
            max_connections=max(16, 2 * config.write_concurrency),
        )
        self._api = WebApi(client, base=base, policy=policy)
        self._names = NameBook(self._api)
        self._template = _creates.Template(self._api)
        self._maps: _reference.Maps | None = None
        self._ref: Reference | None = None
        self._empty_as: _updates.EmptyStrings = {}

    # ------------------------------------------------------------------ plumbing
    @property
    def http(self) -> httpx.Client:
        """The Web API's client (e.g. for event hooks timing the reads: ``scimflow.plan._cost.RoundTrips``)."""
        return self._api.client

    def _secrets(self) -> tuple[str, str, str]:
        c = self._config
        try:
            return c.client_secret.reveal(), c.system_user_token.reveal(), c.private_key.reveal()
        except ConfigError as exc:  # names the reference, never the value
            raise AuthError(str(exc)) from None

    def close(self) -> None:
        """Close the Web API and login clients."""
        self._api.client.close()
        self._login.close()

    def __enter__(self) -> SuperOfficeTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _maps_for(self, ref: Reference) -> _reference.Maps:
        maps = self._maps
        if maps is None or maps.ref is not ref:
            maps = _reference.Maps(ref)
            self._maps = maps
        return maps

    def _read_maps(self) -> _reference.Maps:
        """The maps of the reference read last (read now when none was)."""
        return self._maps_for(self._ref or self.read_reference())

    # ------------------------------------------------------------------ reference lists
    def read_reference(self) -> Reference:
        """Roles, user groups, user plans (licences) and companies of the tenant (see the module docstring).

        The four lists are read side by side (one round trip instead of four, before anything else can start),
        once logged in (a refused login is tried once, not once per list).
        """
        self.auth.ensure_ticket()
        ref, template = _reference.read_reference(self._api)
        self._template.keep(template)
        self._ref = ref
        return ref

    # ------------------------------------------------------------------ reads
    def read_users(self) -> pl.DataFrame:
        """Every user (all types, retired included) as an ``SO_SCHEMA`` frame, ordered by associate id."""
        frame = _reads.read_users(self._api, self._read_maps())
        log.info("read %d SuperOffice users", frame.height)
        return frame

    def read_users_by_id(self, ids: Sequence[int]) -> pl.DataFrame:
        """The given users as an ``SO_SCHEMA`` frame (bulk ``associateDbId oneOf``, chunked); absent ids are absent."""
        return _reads.read_users_by_id(self._api, self._read_maps(), ids)

    def find_by_user_name(self, user_name: str) -> pl.DataFrame:
        """Users whose ``UserName`` equals ``user_name`` (trimmed, case-insensitive), any type."""
        return _reads.find_by_user_name(self._api, self._read_maps(), user_name)

    def find_by_user_names(self, user_names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Users holding any of ``user_names`` in bulk (``userName oneOf``, batches read a few in parallel).

        Returns ``{casefolded trimmed UserName: [{"associate_id", "user_type"}, ...]}`` for the names found;
        a name that is absent from the result is not used by any user (of any type) at the time of the read.
        """
        return _reads.find_by_user_names(self._api, user_names)

    def prepare_names(self, people: Sequence[tuple[Any, Any]]) -> None:
        """Read the taken ``Name`` (User ID) values for these (first, last) names' initials, once per target.

        A few new initials are read with ``assocName begins``; more than
        :data:`~scimflow.connectors.superoffice._values.NAME_PREFIX_READS` read every name once (later
        creates of this target then claim names locally). A name taken by someone else after the read is
        refused by the server (``DuplicateName``) and the create moves on to the next one.
        """
        self._names.prepare(people)

    # ------------------------------------------------------------------ writes
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
        return _creates.create_user(
            self._api,
            self._maps_for(ref),
            fields,
            template=self._template,
            names=self._names,
            retry=retry,
            existing=existing,
        )

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
        if current is not None and _updates.fast_update(
            self._api, maps, associate_id, changes, current, self._empty_as
        ):
            return
        _updates.update_read_first(self._api, maps, associate_id, changes, self._empty_as)

    def retire(self, associate_id: int) -> None:
        """Retire: MakeRetired removes the licences, marks the user ``Deleted`` and the person retired."""
        _updates.retire(self._api, associate_id)

    def reactivate(self, associate_id: int) -> None:
        """Un-retire (``Retired: false``); licences are not restored here: the plan's update re-applies them."""
        _updates.reactivate(self._api, associate_id)
