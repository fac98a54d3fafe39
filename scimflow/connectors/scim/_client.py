"""A SCIM 2.0 client over the project's one HTTP seam (:mod:`scimflow.connectors.http`).

Every request carries ``Authorization: Bearer <token>`` (set on the client, never logged: the retry layer
logs the method and a sanitised URL, filter values elided); bodies go out as ``application/scim+json``.
429/503 are retried by :func:`scimflow.connectors.http.send` honouring ``Retry-After``. Every other status
is translated here, at one boundary (:meth:`ScimClient._raise_for`), into the project's error tree with the
SCIM Error's ``scimType``/``detail`` (parsed with ``scim2_models.Error``).

The client never sends DELETE and never PUT. Dialects are described in :mod:`._mapping`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from scim2_models import Error

from scimflow.config import ScimConfig
from scimflow.connectors.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PayloadError,
    UpstreamError,
)
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, build_client, send
from scimflow.connectors.scim._mapping import (
    Dialect,
    escape_filter_value,
    group_body,
    member_patches,
    patch_body,
    user_body,
    user_patch_ops,
    user_values,
)

__all__ = ["Created", "ListingRefusedError", "ScimClient"]

_MEDIA = "application/scim+json"
#: Statuses the client interprets itself (429 stays with the retry layer).
_OWN = frozenset(range(400, 500)) - {429} | {501}
#: An unfiltered list answered with one of these: the server refuses listing.
_LISTING_REFUSED = frozenset({400, 403, 501})


class ListingRefusedError(UpstreamError):
    """The server refuses to list a resource type (400/403/501 on the unfiltered list): look up by filter."""


@dataclass(frozen=True, slots=True)
class Created:
    """The user a create ended with: its values (``user_values``) and whether this call made it."""

    values: dict[str, Any]
    created: bool

    @property
    def id(self) -> str:
        value = self.values.get("id")
        assert isinstance(value, str)
        return value


class ScimClient:
    """Users and Groups of one SCIM service provider (``scim:`` in the config).

    Thread-safe (one ``httpx.Client``); the discovery result (rfc dialect) is read once, under a lock.
    """

    def __init__(
        self,
        config: ScimConfig,
        *,
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        member_batch: int = 100,
    ) -> None:
        self.config = config
        self.dialect: Dialect = config.dialect
        self.policy = policy
        self.member_batch = member_batch
        token = config.token.reveal()
        self._http = build_client(
            base_url=config.base_url + "/",
            ca_bundle=ca_bundle,
            timeout=config.timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": _MEDIA},
            max_connections=max(4, config.write_concurrency * 2),
        )
        self._lock = threading.Lock()
        self._etags: bool | None = None if config.dialect == "rfc" else False

    # -- plumbing ---------------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        """The client every SCIM request goes through (e.g. for event hooks timing the reads)."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ScimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int]] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = list(params)
        hdrs = dict(headers or {})
        if body is not None:
            kwargs["content"] = json.dumps(body, ensure_ascii=False).encode("utf-8")
            hdrs["Content-Type"] = _MEDIA
        if hdrs:
            kwargs["headers"] = hdrs
        return send(self._http, method, path, policy=self.policy, ok_statuses=_OWN, **kwargs)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PayloadError(
                "not a SCIM JSON object", method=response.request.method, url=response.request.url,
                status=response.status_code,
            )  # fmt: skip
        return body

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        """Translate a non-2xx SCIM answer into the error tree (the one boundary)."""
        status = response.status_code
        if 200 <= status < 300:
            return
        method, url = response.request.method, response.request.url
        detail = _scim_error(response)
        if status == 401:
            raise AuthError(f"SCIM token refused (check scim.token){detail}", method=method, url=url, status=status)
        if status == 403:
            raise AuthError(f"not authorised{detail}", method=method, url=url, status=status)
        if status == 404:
            raise NotFoundError(f"not found{detail}", method=method, url=url, status=status)
        if status in (409, 412):
            what = "already exists" if status == 409 else "changed meanwhile (If-Match failed)"
            raise ConflictError(f"{what}{detail}", method=method, url=url, status=status)
        raise UpstreamError(f"refused{detail}", method=method, url=url, status=status)

    # -- discovery (rfc only) ------------------------------------------------------------------------------

    def etags_supported(self) -> bool:
        """Whether to send ``If-Match`` (rfc: the server's ServiceProviderConfig says so, read once; entra: never)."""
        with self._lock:
            if self._etags is None:
                try:
                    response = self._request("GET", "ServiceProviderConfig")
                    if response.status_code >= 300:
                        self._etags = False
                    else:
                        etag = self._json(response).get("etag")
                        self._etags = bool(isinstance(etag, dict) and etag.get("supported"))
                except (NotFoundError, PayloadError):
                    self._etags = False
            return self._etags

    # -- reads ------------------------------------------------------------------------------------------

    def _pages(
        self, path: str, extra: Sequence[tuple[str, str | int]] = (), *, count: int | None = None
    ) -> Iterator[dict[str, Any]]:
        start, count = 1, count or self.config.page_size
        while True:
            response = self._request("GET", path, params=[*extra, ("startIndex", start), ("count", count)])
            if start == 1 and response.status_code in _LISTING_REFUSED:
                raise ListingRefusedError(
                    f"listing {path} refused{_scim_error(response)}",
                    method="GET", url=response.request.url, status=response.status_code,
                )  # fmt: skip
            self._raise_for(response)
            body = self._json(response)
            resources = body.get("Resources") or []
            if not isinstance(resources, list):
                raise PayloadError("ListResponse.Resources is not a list", method="GET", url=response.request.url)
            yield from (r for r in resources if isinstance(r, dict))
            total = body.get("totalResults")
            start += len(resources)
            if not resources or not isinstance(total, int) or start > total:
                return

    def list_users(self) -> list[dict[str, Any]]:
        """Every user (raw resources), paged with ``startIndex``/``count``; :class:`ListingRefusedError` if refused."""
        return list(self._pages("Users"))

    def list_groups(self) -> list[dict[str, Any]]:
        """Every group with its members, paged; :class:`ListingRefusedError` if refused."""
        return list(self._pages("Groups"))

    def _filter(self, path: str, expr: str, extra: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        response = self._request("GET", path, params=[*extra, ("filter", expr)])
        self._raise_for(response)
        resources = self._json(response).get("Resources") or []
        return [r for r in resources if isinstance(r, dict)]

    def find_user(self, *, user_name: str | None = None, external_id: str | None = None) -> dict[str, Any] | None:
        """The user whose ``userName`` (case-insensitive) equals ``user_name``, else whose ``externalId`` equals
        ``external_id`` (one filter GET each, the second only when the first found nothing), else ``None``."""
        if user_name:
            hits = self._filter("Users", f"userName eq {escape_filter_value(user_name)}")
            hits = [h for h in hits if str(h.get("userName", "")).lower() == user_name.lower()] or hits
            if hits:
                return hits[0]
        if external_id:
            hits = self._filter("Users", f"externalId eq {escape_filter_value(external_id)}")
            if hits:
                return hits[0]
        return None

    def get_user(self, user_id: str) -> dict[str, Any]:
        """One user by id; :class:`NotFoundError` when it is gone."""
        response = self._request("GET", f"Users/{user_id}")
        self._raise_for(response)
        return self._json(response)

    def find_group(self, name: str) -> dict[str, Any] | None:
        """The group whose ``displayName`` is ``name`` (members left out), else ``None``."""
        hits = self._filter(
            "Groups", f"displayName eq {escape_filter_value(name)}", extra=[("excludedAttributes", "members")]
        )
        return hits[0] if hits else None

    def get_group(self, group_id: str) -> dict[str, Any]:
        """One group by id, with its members."""
        response = self._request("GET", f"Groups/{group_id}")
        self._raise_for(response)
        return self._json(response)

    # -- user writes ------------------------------------------------------------------------------------

    def create_user(self, values: Mapping[str, Any], *, look_first: bool = False) -> Created:
        """Create the user with these plan values, or find the one already there and bring it up to date.

        ``entra``: filter GETs (``userName``, then ``externalId``) first, then ``POST /Users``. ``rfc``: POST
        (the filter GETs first only with ``look_first``, e.g. for a retried create). Both: a 409 means
        "already there": re-match by filter, then PATCH the differences.
        """
        if self.dialect == "entra" or look_first:
            found = self.find_user(user_name=values.get("user_name"), external_id=values.get("entra_id"))
            if found is not None:
                return Created(self._bring_up_to_date(found, values), created=False)
        response = self._request("POST", "Users", body=user_body(values, self.dialect))
        if response.status_code == 409:
            found = self.find_user(user_name=values.get("user_name"), external_id=values.get("entra_id"))
            if found is None:
                self._raise_for(response)
            assert found is not None
            return Created(self._bring_up_to_date(found, values), created=False)
        self._raise_for(response)
        created = user_values(self._json(response))
        if not created.get("id"):
            raise PayloadError("created user has no id", method="POST", url=response.request.url)
        return Created(created, created=True)

    def _bring_up_to_date(self, found: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        current = user_values(found)
        changes = {k: v for k, v in values.items() if k in current and k != "id" and _differs(k, current.get(k), v)}
        if changes:
            self.patch_user(str(current["id"]), changes, current, version=current.get("version"))
            current.update(changes)
            current["version"] = None  # the PATCH moved it on
        return current

    def patch_user(
        self, user_id: str, changes: Mapping[str, Any], current: Mapping[str, Any], *, version: str | None = None
    ) -> dict[str, Any] | None:
        """PATCH the changed attributes (``{plan field: new value}``); 200 or 204 accepted.

        ``current`` (the user's values now) fills ``name.formatted``. ``version`` (``meta.version``) is sent as
        ``If-Match`` when the server supports ETags (rfc). Returns the resource on 200, ``None`` on 204;
        :class:`ConflictError` on 412, :class:`NotFoundError` on 404.
        """
        ops = user_patch_ops(changes, current, self.dialect)
        if not ops:
            return None
        headers = {"If-Match": version} if version and self.etags_supported() else None
        response = self._request("PATCH", f"Users/{user_id}", body=patch_body(ops), headers=headers)
        self._raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return self._json(response)

    def set_active(self, user_id: str, active: bool, *, version: str | None = None) -> None:
        """Deactivate (``active`` false: never DELETE) or reactivate a user."""
        self.patch_user(user_id, {"active": active}, {}, version=version)

    # -- groups -----------------------------------------------------------------------------------------

    def create_group(self, name: str, *, look_first: bool = False) -> tuple[dict[str, Any], bool]:
        """The computed group ``name``: found (``entra``: filter GET first; ``rfc`` only with ``look_first``)
        or created empty (``POST /Groups``).

        A 409 on the POST re-reads it by ``displayName``. Returns the group (a found one without its members)
        and whether this call created it.
        """
        if self.dialect == "entra" or look_first:
            found = self.find_group(name)
            if found is not None:
                return found, False
        response = self._request("POST", "Groups", body=group_body(name, self.dialect))
        if response.status_code == 409:
            found = self.find_group(name)
            if found is not None:
                return found, False
        self._raise_for(response)
        group = self._json(response)
        if not group.get("id"):
            raise PayloadError("created group has no id", method="POST", url=response.request.url)
        return group, True

    def change_members(self, group_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
        """Add and remove these user ids, many per PATCH (``member_batch``); returns the PATCHes sent."""
        bodies = member_patches(add, remove, self.dialect, self.member_batch)
        for body in bodies:
            response = self._request("PATCH", f"Groups/{group_id}", body=body)
            self._raise_for(response)
        return len(bodies)


def _differs(field: str, current: Any, wanted: Any) -> bool:
    if field == "active":
        return bool(current) != (wanted is not False)
    a = None if current is None else (str(current).strip() or None)
    b = None if wanted is None else (str(wanted).strip() or None)
    return a != b


def _scim_error(response: httpx.Response) -> str:
    """``": scimType: detail"`` from a SCIM Error body (scim2-models), or ``""``; never request data."""
    try:
        raw = response.json()
    except ValueError:
        return ""
    if not isinstance(raw, dict):
        return ""
    try:
        err = Error.model_validate(raw)
    except ValidationError:
        return ""
    parts = [p for p in (err.scim_type, (err.detail or "")[:200]) if p]
    return f": {': '.join(parts)}" if parts else ""
