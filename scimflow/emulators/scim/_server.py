"""The SCIM 2.0 service provider inside the emulator: python-scim2's ``scim2-server``, configured, not rewritten.

Two policies (reference/scim-target.md §4):

- ``rfc``: scim2-server's defaults, strict RFC 7643/7644 (Entra's member removal with a value array is a 400).
- ``entra``: the Entra-tolerant :class:`scim2_models.ScimPolicy`: a ``remove`` carrying a value removes the
  values it names (``remove_value_as_filter=apply``), and a replace or add on a filtered path that matches no
  entry (``emails[type eq "work"].value``) creates it (``unmatched_path_filter=create``), and attributes or
  schema URNs it does not know (Entra's ``…/ADSCIM/2.0/Group``) are ignored (``unknown=ignore``).

The server keeps its resources in scim2-server's :class:`~scim2_server.memory.InMemoryStorage`; fixtures load
into it and snapshots are read from it in the same JSON form.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any, Literal, cast

from scim2_models import (
    AuthenticationScheme,
    Context,
    External,
    ForbiddenException,
    Meta,
    Reference,
    Resource,
    ScimPolicy,
    ScimProvider,
    TooManyException,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage, utcnow
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.utils import load_default_resource_types, load_default_schemas, load_default_service_provider_config

from scimflow.emulators.scim._members import patch_members
from scimflow.emulators.scim._storage import FastCopyService, FastCopyStorage

__all__ = ["DIALECTS", "Dialect", "ScimFixtureError", "ScimServerApp", "load_resources", "scim_provider"]

Dialect = Literal["entra", "rfc"]
DIALECTS: tuple[Dialect, ...] = ("entra", "rfc")

#: Entra's tolerances, named in scim2-models' ``policy.py`` docstrings as the reason they exist.
ENTRA_POLICY = ScimPolicy(
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    # Entra sends its own group schema URN (…/ADSCIM/2.0/Group) with every group POST (reference §2)
    unknown=ScimPolicy.Unknown.ignore,
)

_BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken,
    name="bearer_token",
    description="HTTP Bearer Token",
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
    primary=True,
)


class ScimFixtureError(ValueError):
    """A SCIM fixture holds something that is not a valid User or Group; the message names the record."""


def scim_provider(dialect: Dialect) -> ScimProvider:
    """scim2-server's default service (RFC 7643 schemas, User and Group, its default config) under a policy."""
    if dialect not in DIALECTS:
        msg = f"unknown SCIM dialect {dialect!r}: use one of {', '.join(DIALECTS)}"
        raise ValueError(msg)
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), _BEARER]
    return ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
        policy=ENTRA_POLICY if dialect == "entra" else None,
    )


class ScimServerApp(ASGIApplication):
    """scim2-server's ASGI application with a bearer token and a switch that refuses listing users.

    ``token`` ``None`` refuses every request but ``/ServiceProviderConfig`` (which RFC 7643 §5 leaves open).
    ``member_patches`` (a storage) serves member-only PATCHes of Groups on a window of the group
    (:func:`scimflow.emulators.scim._members.patch_members`); ``None`` leaves them to scim2-server.
    ``list_users`` ``False`` answers ``GET /Users`` (and ``POST /Users/.search``) without a filter with
    ``refused_status`` (403 or 400), as providers do that allow look-ups by filter only.
    """

    def __init__(self, storage: AsyncInMemoryStorage, provider: ScimProvider) -> None:
        # Cursor pagination is not in the default config, so the secret is never used; it is set for safety.
        super().__init__(storage, provider, FastCopyService(provider, secret=secrets.token_urlsafe(32)))
        self.token: str | None = None
        self.list_users = True
        self.refused_status = 403
        #: The storage member PATCHes of Groups are served on (:mod:`._members`), or ``None``: scim2-server's path.
        self.member_patches: FastCopyStorage | None = None
        self.windowed = 0  # member PATCHes served that way

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if self.token is None or scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.token):
            raise UnauthorizedException(detail="a valid bearer token is required")

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        if not self.list_users and self._lists_users(request):
            raise _refusal(self.refused_status)
        if self.member_patches is not None and request.method.upper() == "PATCH":
            if self.needs_auth(request):
                self.check_auth(request)
            request.subject = self.get_subject(request)
            served = patch_members(self.service, self.member_patches, request)
            if served is not None:
                self.windowed += 1
                return served
            return await self.handler.handle(request)
        return await super().dispatch_request(request)

    def _lists_users(self, request: ScimRequest) -> bool:
        try:
            target = self.service.match(request)
        except Exception:  # noqa: BLE001 - the handler answers the unmatched path itself
            return False
        if (target.endpoint or "").strip("/").lower() != "users" or target.resource_id:
            return False
        if target.operation is Operation.search:
            return not request.query.get("filter")
        if target.operation is Operation.search_with_body:
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                return False
            return not (isinstance(body, dict) and body.get("filter"))
        return False


def _refusal(status: int) -> Exception:
    detail = "listing users is not allowed here: look users up with a filter (userName eq, externalId eq)"
    if status == 400:
        return TooManyException(detail=detail)
    return ForbiddenException(detail=detail)


def load_resources(provider: ScimProvider, data: dict[str, Any], source: str) -> list[Resource[Any]]:
    """The Users and Groups of a fixture (``{"users": [...], "groups": [...]}``) as stored resources.

    Ids and ``meta`` are kept when given (so a snapshot loads back as it was), else made up.

    Raises:
        ScimFixtureError: a record is not an object or not a valid resource (names ``source``, list and index).
    """
    out: list[Resource[Any]] = []
    for key, name in (("users", "User"), ("groups", "Group")):
        records = data.get(key) or []
        if not isinstance(records, list):
            msg = f"{source}: '{key}' must be a list"
            raise ScimFixtureError(msg)
        resource_type = next(rt for rt in provider.resource_types if rt.name == name)
        model = cast("type[Resource[Any]]", provider.model_for(resource_type))
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                msg = f"{source}: {key}[{i}] must be an object"
                raise ScimFixtureError(msg)
            body = {k: v for k, v in record.items() if k != "meta"}
            try:
                with provider:
                    resource = model.model_validate(body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
            except Exception as exc:  # noqa: BLE001 - pydantic and SCIM errors alike name the field
                msg = f"{source}: {key}[{i}] is not a valid SCIM {name}: {exc}"
                raise ScimFixtureError(msg) from None
            resource.id = str(record.get("id") or uuid.uuid4().hex)
            resource.meta = _meta(record.get("meta"), name, f"{source}: {key}[{i}].meta")
            out.append(resource)
    return out


def _meta(given: Any, resource_type: str, where: str) -> Meta:
    """A loaded resource's ``meta``: the fixture's dates and version when given, else now and ``W/"0"``."""
    now = utcnow()
    meta = Meta(resource_type=resource_type, created=now, last_modified=now, version='W/"0"')
    if given is None:
        return meta
    if not isinstance(given, dict):
        msg = f"{where} must be an object"
        raise ScimFixtureError(msg)
    try:
        loaded = Meta.model_validate({k: v for k, v in given.items() if k != "location"})
    except Exception as exc:  # noqa: BLE001 - pydantic names the field
        msg = f"{where} is not a valid SCIM meta: {exc}"
        raise ScimFixtureError(msg) from None
    return meta.model_copy(
        update={
            "created": loaded.created or now,
            "last_modified": loaded.last_modified or loaded.created or now,
            "version": loaded.version or meta.version,
        }
    )


def store(storage: InMemoryStorage, resources: list[Resource[Any]], provider: ScimProvider) -> None:
    """Replace what ``storage`` holds by ``resources`` (indexed under the provider's policy)."""
    with provider, storage.lock:
        storage.resources = resources


def dump(storage: InMemoryStorage, provider: ScimProvider) -> dict[str, list[dict[str, Any]]]:
    """``{"users": [...], "groups": [...]}``: every stored resource as JSON, ordered by id."""
    with provider, storage.lock:
        resources = list(storage.resources)
        out: dict[str, list[dict[str, Any]]] = {"users": [], "groups": []}
        for r in sorted(resources, key=lambda r: str(r.id)):
            kind = r.meta.resource_type if r.meta is not None else None
            key = "groups" if kind == "Group" else "users"
            out[key].append(r.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, mode="json"))
    return out
