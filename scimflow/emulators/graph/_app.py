"""The Graph emulator's ASGI app: routes, the edge (request ids, latency, auth, faults), and the knobs.

One :class:`GraphEmulator` holds the state (:class:`~._tenant.Tenant`, issued tokens, counters)
behind a ``threading.RLock``; handlers are ``async`` and hold the lock only while they touch state, so
latency (``await answer_at``, an ``asyncio.sleep``) never blocks the event loop or other requests.

The edge wraps every request: a fresh ``request-id`` header (and ``client-request-id`` echoed), counting,
latency; for ``/v1.0`` also bearer-token checks (401 ``InvalidAuthenticationToken``), the deterministic
throttle storm (``throttle_next``), random throttling and 503s (``throttle_rate``, ``error_rate``,
seeded by ``seed``), and a token bucket (``rate_limit_rps``) whose 429 carries the exact, possibly
fractional, wait in ``Retry-After``. Error bodies are Graph's
``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``.

Where Graph's documentation is silent the emulator picks (and documents) one behaviour: ``$skip`` on
``/users`` is a 400; ``$top`` on delta is ignored; an unknown or foreign ``$deltatoken`` is a 400
``syncStateNotFound``; an expired one is a 410 ``resyncRequired`` with ``Location`` (or the 400, by
``delta_expired_status``).

What Microsoft's SDKs send is answered too: the OData function form ``/users/delta()`` and
``/groups/delta()`` (the same delta; its links use the ``/delta`` form, which Graph accepts as well), and
``/users/$count`` / ``/groups/$count`` (``text/plain``; a 400 without ``ConsistencyLevel: eventual``).

The module is longer than the project's ~500 lines on purpose: it is one route table and its handlers,
which read best side by side; the tenant model, OData filters, identity and knobs live in their own modules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scimflow.emulators.graph._identity import TokenStore, discovery_document, issue_token
from scimflow.emulators.graph._odata import FilterError, TokenCodec, compile_filter
from scimflow.emulators.graph._settings import GraphEmulatorSettings
from scimflow.emulators.graph._tenant import (
    DEFAULT_USER_PROPERTIES,
    GROUP,
    GROUP_PROPERTIES,
    USER,
    USER_PROPERTIES,
    Tenant,
    TenantError,
    project_user,
)
from scimflow.emulators.serve import DateHeader, answer_at

__all__ = ["GraphEmulator"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
DEFAULT_GROUP_PROPERTIES: tuple[str, ...] = (
    "id",
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
)
_BOOL_USER_PROPS = frozenset({"accountEnabled", "onPremisesSyncEnabled"})
_BOOL_GROUP_PROPS = frozenset({"mailEnabled", "securityEnabled"})


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class _Render:
    """How a listing shapes one object: ``key`` names the shape (for the JSON cache), ``fn`` builds it."""

    key: tuple[str, tuple[str, ...] | None]
    fn: Callable[[str], dict[str, Any]]

    def __call__(self, object_id: str) -> dict[str, Any]:
        return self.fn(object_id)


class _GraphReply(Exception):  # noqa: N818 - a control-flow carrier for an error reply
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _graph_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    state = request.scope.get("state", {})
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": state.get("request_id", ""),
                "client-request-id": state.get("client_request_id", ""),
            },
        }
    }
    return Response(_dumps(body), status_code=status, headers=headers, media_type="application/json")


def _ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(body), status_code=status, headers=headers, media_type=ODATA_JSON)


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


class GraphEmulator:
    """Microsoft Graph (users, groups, delta) plus the identity platform's token endpoint, in one ASGI app.

    Args:
        data: the tenant in the fixture format ``{"users": [...], "groups": [{"id", "displayName", "members"}]}``.
        settings: what is accepted and how the emulator misbehaves; changeable at run time.

    Example::

        emu = GraphEmulator(json.loads(Path("G.json").read_text()), GraphEmulatorSettings(client_secret="s3cret"))
        served = serve_in_thread(emu.app, certfile=..., keyfile=...)
    """

    def __init__(self, data: dict[str, Any], settings: GraphEmulatorSettings | None = None) -> None:
        self.settings = settings or GraphEmulatorSettings()
        self._lock = threading.RLock()
        self._tenant = Tenant(data)
        self._tokens = TokenStore()
        self._codec = TokenCodec(secrets.token_bytes(32), secrets.token_hex(8))
        self._rng = random.Random(self.settings.seed)  # noqa: S311 - fault injection, not security
        self._bucket = (0.0, time.monotonic())
        self._filter_cache: dict[tuple[str, str, bool], tuple[int, list[str]]] = {}
        self._json_cache: dict[tuple[str, tuple[str, ...] | None], dict[str, bytes]] = {}
        self._json_version = -1
        self.request_count = 0
        self._stats: Counter[str] = Counter()
        self.app = Starlette(
            routes=self._routes(),
            middleware=[
                Middleware(DateHeader, offset=lambda: float(self.settings.clock_offset)),
                Middleware(_Edge, emulator=self),
            ],
        )

    # ---- public helpers --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The current data in the fixture format (users + groups with direct members)."""
        with self._lock:
            return self._tenant.snapshot()

    def stats(self) -> dict[str, int]:
        """Counters since the last reset: ``requests``, ``token_requests``, ``graph_requests``, ``throttled``, ..."""
        with self._lock:
            out = {
                k: self._stats[k]
                for k in (
                    "token_requests",
                    "discovery_requests",
                    "graph_requests",
                    "delta_requests",
                    "throttled",
                    "errors",
                    "unauthorized",
                    "writes",
                )
            }
            out["requests"] = self.request_count
            return out

    def reset_counters(self) -> None:
        with self._lock:
            self.request_count = 0
            self._stats.clear()

    def revoke_tokens(self) -> int:
        """Invalidate every issued access token (the next Graph call with one gets a 401)."""
        with self._lock:
            return self._tokens.revoke_all()

    # ---- edge ------------------------------------------------------------------------------------

    def _admit(self, path: str, authorization: str | None) -> tuple[int, str, str, dict[str, str]] | None:
        """Counting, auth and fault injection for one request; an error tuple when it must be refused."""
        s = self.settings
        with self._lock:
            if path.startswith("/_emulator/"):
                return None
            self.request_count += 1
            if path.endswith("/oauth2/v2.0/token"):
                self._stats["token_requests"] += 1
            elif "/.well-known/" in path:
                self._stats["discovery_requests"] += 1
            if not path.startswith("/v1.0/"):
                return None
            self._stats["graph_requests"] += 1
            if path.endswith(("/delta", "/delta()")):
                self._stats["delta_requests"] += 1
            if s.revoke_tokens_after is not None:
                if s.revoke_tokens_after <= 0:
                    self._tokens.revoke_all()
                    s.revoke_tokens_after = None
                else:
                    s.revoke_tokens_after -= 1
            token = ""
            if authorization and authorization[:7].lower() == "bearer ":
                token = authorization[7:].strip()
            reason = "Access token is empty." if not token else self._tokens.check(token)
            if reason is not None:
                self._stats["unauthorized"] += 1
                return (
                    401,
                    "InvalidAuthenticationToken",
                    reason,
                    {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                )
            missing = _missing_permission(path, s.app_permissions)
            if missing is not None:
                self._stats["forbidden"] = self._stats.get("forbidden", 0) + 1
                return 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", {}
            if s.throttle_next > 0:
                s.throttle_next -= 1
                return self._throttled(s.retry_after)
            if s.throttle_rate > 0 and self._rng.random() < s.throttle_rate:
                return self._throttled(s.retry_after)
            if s.rate_limit_rps:
                wait = self._take_bucket(s.rate_limit_rps)
                if wait > 0:
                    return self._throttled(f"{wait:.3f}")
            if s.error_rate > 0 and self._rng.random() < s.error_rate:
                self._stats["errors"] += 1
                return 503, "serviceNotAvailable", "Service unavailable. Please try again later.", {"Retry-After": "1"}
        return None

    def _throttled(self, retry_after: str) -> tuple[int, str, str, dict[str, str]]:
        self._stats["throttled"] += 1
        return (
            429,
            "TooManyRequests",
            "Please retry again later.",
            {
                "Retry-After": retry_after,
                "x-ms-throttle-information": "ResourceUnitLimitExceeded",
                "x-ms-throttle-scope": f"Tenant_Application/ReadWrite/{self.settings.client_id}/{self.settings.tenant_id}",
            },
        )

    def _take_bucket(self, rps: float) -> float:
        """Token bucket of capacity ``max(1, rps)``: 0 when a request may pass, else seconds to wait."""
        tokens, last = self._bucket
        now = time.monotonic()
        capacity = max(1.0, rps)
        tokens = min(capacity, tokens + (now - last) * rps) if last else capacity
        if tokens >= 1.0:
            self._bucket = (tokens - 1.0, now)
            return 0.0
        self._bucket = (tokens, now)
        return (1.0 - tokens) / rps

    # ---- routes ----------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        h = self._handler
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", h(self._discovery), methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", h(self._token), methods=["POST"]),
            Route("/v1.0/users", h(self._list_users), methods=["GET"]),
            Route("/v1.0/users/delta", h(self._delta_users), methods=["GET"]),
            Route("/v1.0/users/delta()", h(self._delta_users), methods=["GET"]),  # the SDKs' function form
            Route("/v1.0/users/$count", h(self._count_users), methods=["GET"]),
            Route("/v1.0/users/{id}", h(self._get_user), methods=["GET"]),
            Route("/v1.0/users/{id}/transitiveMemberOf", h(self._member_of), methods=["GET"]),
            Route("/v1.0/groups", h(self._list_groups), methods=["GET"]),
            Route("/v1.0/groups/delta", h(self._delta_groups), methods=["GET"]),
            Route("/v1.0/groups/delta()", h(self._delta_groups), methods=["GET"]),
            Route("/v1.0/groups/$count", h(self._count_groups), methods=["GET"]),
            Route("/v1.0/groups/{id}", h(self._get_group), methods=["GET"]),
            Route("/v1.0/groups/{id}/members", h(self._members), methods=["GET"]),
            Route("/v1.0/groups/{id}/transitiveMembers", h(self._transitive_members), methods=["GET"]),
            Route(
                "/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user", h(self._transitive_users), methods=["GET"]
            ),
            Route("/v1.0/groups/{id}/transitiveMemberOf", h(self._member_of), methods=["GET"]),
            Route("/v1.0/{rest:path}", h(self._unknown_segment)),
            Route("/_emulator/snapshot", h(self._snapshot), methods=["GET"]),
            Route("/_emulator/stats", h(self._stats_route), methods=["GET"]),
            Route("/_emulator/reset-counters", h(self._reset), methods=["POST"]),
            Route("/_emulator/settings", h(self._settings), methods=["POST"]),
            Route("/_emulator/revoke-tokens", h(self._revoke), methods=["POST"]),
            Route("/_emulator/users", h(self._create_user), methods=["POST"]),
            Route("/_emulator/users/{id}", h(self._change_user), methods=["PATCH", "DELETE"]),
            Route("/_emulator/groups", h(self._create_group), methods=["POST"]),
            Route("/_emulator/groups/{id}", h(self._change_group), methods=["PATCH", "DELETE"]),
            Route("/_emulator/groups/{id}/members", h(self._add_member), methods=["POST"]),
            Route("/_emulator/groups/{id}/members/{member_id}", h(self._remove_member), methods=["DELETE"]),
        ]

    @staticmethod
    def _handler(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except _GraphReply as exc:
                return _graph_error(request, exc.status, exc.code, exc.message, exc.headers)
            except TenantError as exc:
                return _graph_error(request, exc.status, exc.code, exc.message)
            except FilterError as exc:
                return _graph_error(request, 400, exc.code, str(exc))

        return run

    # ---- identity ----------------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if tenant.lower() != self.settings.tenant_id.lower():
            return Response(
                _dumps({"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}),
                status_code=400,
                media_type="application/json",
            )
        return Response(_dumps(discovery_document(_origin(request), tenant)), media_type="application/json")

    async def _token(self, request: Request) -> Response:
        # Parsed here (not request.form()): that needs python-multipart, and the body is always urlencoded.
        fields = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        tenant = request.path_params["tenant"]
        endpoint = f"{_origin(request)}/{tenant}/oauth2/v2.0/token"
        with self._lock:
            status, body = issue_token(
                fields, tenant=tenant, settings=self.settings, token_endpoint=endpoint, store=self._tokens
            )
        return Response(
            _dumps(body),
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    # ---- query helpers -------------------------------------------------------------------------------

    @staticmethod
    def _top(request: Request, default: int = 100) -> int:
        raw = request.query_params.get("$top")
        if raw is None:
            return default
        try:
            top = int(raw)
        except ValueError:
            raise _GraphReply(
                400, "Request_BadRequest", f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
            ) from None
        if not 1 <= top <= 999:
            raise _GraphReply(
                400, "Request_BadRequest", f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive."
            )
        return top

    @staticmethod
    def _select(request: Request, allowed: frozenset[str], type_name: str) -> tuple[str, ...] | None:
        raw = request.query_params.get("$select")
        if raw is None:
            return None
        names = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
        for name in names:
            if name not in allowed:
                raise _GraphReply(
                    400, "Request_BadRequest", f"Could not find a property named '{name}' on type '{type_name}'."
                )
        return names

    @staticmethod
    def _advanced(request: Request) -> bool:
        return (
            request.headers.get("ConsistencyLevel", "").lower() == "eventual"
            and request.query_params.get("$count", "").lower() == "true"
        )

    def _offset(self, request: Request) -> int:
        """The offset a ``$skiptoken`` encodes; the token is bound to the rest of the query."""
        raw = request.query_params.get("$skiptoken")
        if raw is None:
            return 0
        payload = self._codec.decode(raw)
        if payload is None or payload.get("q") != self._query_key(request) or not isinstance(payload.get("o"), int):
            raise _GraphReply(400, "Request_BadRequest", "The specified page token value has expired or is invalid.")
        return int(payload["o"])

    @staticmethod
    def _query_key(request: Request) -> str:
        items = sorted((k, v) for k, v in request.query_params.multi_items() if k != "$skiptoken")
        return hashlib.sha256(f"{request.url.path}?{items}".encode()).hexdigest()[:16]

    def _link(self, request: Request, extra: dict[str, str], *, keep: bool = True) -> str:
        params = (
            [(k, v) for k, v in request.query_params.multi_items() if k not in ("$skiptoken", "$deltatoken")]
            if keep
            else []
        )
        params.extend(extra.items())
        query = urlencode(params, quote_via=quote, safe="$,'()")
        return f"{_origin(request)}{request.url.path}?{query}"

    def _page(self, request: Request, ids: list[str], render: _Render, context: str, count: bool = False) -> Response:
        top = self._top(request)
        off = self._offset(request)
        with self._lock:
            value = b",".join(self._json_of(render, i) for i in ids[off : off + top])
        body: dict[str, Any] = {"@odata.context": context}
        if count and off == 0 and self._advanced(request):
            body["@odata.count"] = len(ids)
        if off + top < len(ids):
            body["@odata.nextLink"] = self._link(
                request, {"$skiptoken": self._codec.encode({"o": off + top, "q": self._query_key(request)})}
            )
        # The envelope is encoded once; the objects come from a per-(render, object) JSON cache.
        raw = _dumps(body)[:-1] + b',"value":[' + value + b"]}"
        return Response(raw, media_type=ODATA_JSON)

    def _json_of(self, render: _Render, object_id: str) -> bytes:
        """The object's JSON as ``render`` shapes it, cached until the tenant changes (big pages stay cheap)."""
        if self._json_version != self._tenant.version:
            self._json_cache.clear()
            self._json_version = self._tenant.version
        per = self._json_cache.setdefault(render.key, {})
        raw = per.get(object_id)
        if raw is None:
            raw = _dumps(render(object_id))
            if len(per) < 2_000_000:
                per[object_id] = raw
        return raw

    def _context(self, request: Request, entity: str, select: tuple[str, ...] | None) -> str:
        base = f"{_origin(request)}/v1.0/$metadata#{entity}"
        return f"{base}({','.join(select)})" if select else base

    def _render_user(self, select: tuple[str, ...]) -> _Render:
        users = self._tenant.users
        return _Render(("user", select), lambda uid: project_user(users[uid], select))

    def _render_group(self, select: tuple[str, ...]) -> _Render:
        groups = self._tenant.groups

        def render(gid: str) -> dict[str, Any]:
            g = groups[gid]
            out = {p: g.get(p) for p in select if p != "members"}
            out.setdefault("id", gid)
            return out

        return _Render(("group", select), render)

    def _render_object(self, select: tuple[str, ...] | None) -> _Render:
        t = self._tenant
        user_props = tuple(p for p in (select or DEFAULT_USER_PROPERTIES) if p in USER_PROPERTIES)
        group_props = tuple(
            p for p in (select or DEFAULT_GROUP_PROPERTIES) if p in GROUP_PROPERTIES and p not in ("id", "members")
        )

        def render(object_id: str) -> dict[str, Any]:
            user = t.users.get(object_id)
            if user is not None:
                return {"@odata.type": USER, **project_user(user, user_props)}
            g = t.groups[object_id]
            out: dict[str, Any] = {"@odata.type": GROUP, "id": object_id}
            out.update({p: g.get(p) for p in group_props})
            return out

        return _Render(("object", select), render)

    def _filtered(self, kind: str, request: Request, *, advanced: bool | None = None) -> list[str]:
        """The live ids of ``kind`` matching the request's ``$filter`` (advanced queries as the request allows)."""
        text = request.query_params.get("$filter")
        t = self._tenant
        with self._lock:
            ids = t.live_users() if kind == "users" else t.live_groups()
            if not text:
                return ids
            advanced = self._advanced(request) if advanced is None else advanced
            key = (kind, text, advanced)
            hit = self._filter_cache.get(key)
            if hit is not None and hit[0] == t.version:
                return hit[1]
            if kind == "users":
                pred = compile_filter(
                    text,
                    advanced=advanced,
                    string_props=USER_PROPERTIES - _BOOL_USER_PROPS,
                    bool_props=_BOOL_USER_PROPS,
                )
                objects: dict[str, dict[str, Any]] = t.users
            else:
                pred = compile_filter(
                    text,
                    advanced=advanced,
                    string_props=GROUP_PROPERTIES - _BOOL_GROUP_PROPS,
                    bool_props=_BOOL_GROUP_PROPS,
                )
                objects = t.groups
            out = [i for i in ids if pred(objects[i])]
            if len(self._filter_cache) > 64:
                self._filter_cache.clear()
            self._filter_cache[key] = (t.version, out)
            return out

    # ---- Graph: users and groups ---------------------------------------------------------------------

    async def _list_users(self, request: Request) -> Response:
        q = request.query_params
        if "$skip" in q:
            raise _GraphReply(400, "Request_BadRequest", "'$skip' is not supported by the service.")
        for unsupported in ("$orderby", "$search"):
            if unsupported in q and not self._advanced(request):
                raise _GraphReply(400, "Request_UnsupportedQuery", "Unsupported Query.")
        select = self._select(request, USER_PROPERTIES, "microsoft.graph.user")
        ids = self._filtered("users", request)
        return self._page(
            request,
            ids,
            self._render_user(select or DEFAULT_USER_PROPERTIES),
            self._context(request, "users", select),
            count=True,
        )

    async def _count_users(self, request: Request) -> Response:
        return self._count(request, "users")

    async def _count_groups(self, request: Request) -> Response:
        return self._count(request, "groups")

    def _count(self, request: Request, kind: str) -> Response:
        """``GET /{kind}/$count``: the number of (filtered) objects as ``text/plain``; an advanced query only.

        Graph answers it only with ``ConsistencyLevel: eventual`` (a 400 otherwise), and the count is
        exact here (Graph's is eventually consistent).
        """
        if request.headers.get("ConsistencyLevel", "").lower() != "eventual":
            raise _GraphReply(
                400,
                "Request_BadRequest",
                "$count is not currently supported without the 'ConsistencyLevel: eventual' header.",
            )
        ids = self._filtered(kind, request, advanced=True)
        return Response(str(len(ids)), media_type="text/plain")

    async def _get_user(self, request: Request) -> Response:
        key = request.path_params["id"]
        select = self._select(request, USER_PROPERTIES, "microsoft.graph.user")
        with self._lock:
            t = self._tenant
            user = t.users.get(key)
            if user is None and "@" in key:
                user = next(
                    (u for u in t.users.values() if str(u.get("userPrincipalName", "")).lower() == key.lower()), None
                )
            if user is None:
                raise TenantError(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
                )
            body = {
                "@odata.context": self._context(request, "users/$entity", select),
                **project_user(user, select or DEFAULT_USER_PROPERTIES),
            }
        return _ok(body)

    async def _list_groups(self, request: Request) -> Response:
        if "$skip" in request.query_params:
            raise _GraphReply(400, "Request_BadRequest", "'$skip' is not supported by the service.")
        select = self._select(request, GROUP_PROPERTIES, "microsoft.graph.group")
        ids = self._filtered("groups", request)
        return self._page(
            request,
            ids,
            self._render_group(select or DEFAULT_GROUP_PROPERTIES),
            self._context(request, "groups", select),
            count=True,
        )

    def _group_or_404(self, gid: str) -> None:
        if gid not in self._tenant.groups:
            raise TenantError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{gid}' does not exist or one of its queried reference-property objects are not present.",
            )

    async def _get_group(self, request: Request) -> Response:
        gid = request.path_params["id"]
        select = self._select(request, GROUP_PROPERTIES, "microsoft.graph.group")
        with self._lock:
            self._group_or_404(gid)
            body = {
                "@odata.context": self._context(request, "groups/$entity", select),
                **self._render_group(select or DEFAULT_GROUP_PROPERTIES)(gid),
            }
        return _ok(body)

    async def _members(self, request: Request) -> Response:
        gid = request.path_params["id"]
        select = self._select(request, USER_PROPERTIES | GROUP_PROPERTIES, "microsoft.graph.directoryObject")
        with self._lock:
            self._group_or_404(gid)
            ids = [m for m in self._tenant.members[gid] if self._tenant.kind_of(m) is not None]
        return self._page(request, ids, self._render_object(select), self._context(request, "directoryObjects", select))

    async def _transitive_members(self, request: Request) -> Response:
        gid = request.path_params["id"]
        select = self._select(request, USER_PROPERTIES | GROUP_PROPERTIES, "microsoft.graph.directoryObject")
        with self._lock:
            self._group_or_404(gid)
            ids = self._tenant.transitive_ids(gid)
        return self._page(request, ids, self._render_object(select), self._context(request, "directoryObjects", select))

    async def _transitive_users(self, request: Request) -> Response:
        q = request.query_params
        if any(k in q for k in ("$filter", "$orderby", "$search", "$count")) and not self._advanced(request):
            raise _GraphReply(400, "Request_UnsupportedQuery", "Unsupported Query.")
        gid = request.path_params["id"]
        select = self._select(request, USER_PROPERTIES, "microsoft.graph.user")
        with self._lock:
            self._group_or_404(gid)
            ids = self._tenant.transitive_ids(gid, users_only=True)
        render = self._render_object(select)
        return self._page(request, ids, render, self._context(request, "users", select))

    async def _member_of(self, request: Request) -> Response:
        object_id = request.path_params["id"]
        select = self._select(request, GROUP_PROPERTIES, "microsoft.graph.group")
        with self._lock:
            if self._tenant.kind_of(object_id) is None:
                raise TenantError(
                    404,
                    "Request_ResourceNotFound",
                    f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
                )
            ids = list(self._tenant.transitive_member_of(object_id))
        return self._page(request, ids, self._render_object(select), self._context(request, "directoryObjects", select))

    async def _unknown_segment(self, request: Request) -> Response:
        segment = request.path_params["rest"].split("/")[0]
        raise _GraphReply(400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    # ---- Graph: delta -------------------------------------------------------------------------------

    async def _delta_users(self, request: Request) -> Response:
        return self._delta(request, "users")

    async def _delta_groups(self, request: Request) -> Response:
        return self._delta(request, "groups")

    def _delta(self, request: Request, kind: str) -> Response:
        q = request.query_params
        s = self.settings
        for unsupported in ("$expand", "$orderby", "$filter", "$search"):
            if unsupported in q:
                raise _GraphReply(
                    400, "Request_UnsupportedQuery", f"Unsupported query option '{unsupported}' for delta."
                )
        allowed = USER_PROPERTIES if kind == "users" else GROUP_PROPERTIES
        type_name = "microsoft.graph.user" if kind == "users" else "microsoft.graph.group"
        default = DEFAULT_USER_PROPERTIES if kind == "users" else (*DEFAULT_GROUP_PROPERTIES, "members")
        minimal = "return=minimal" in request.headers.get("Prefer", "").replace(" ", "").lower()
        base = f"{_origin(request)}/v1.0/{kind}/delta"
        now = time.time()
        with self._lock:
            t = self._tenant
            if "$deltatoken" in q:
                raw = q["$deltatoken"]
                if raw == "latest":
                    select = self._select(request, allowed, type_name) or default
                    token = self._codec.encode({"k": kind, "v": t.version, "s": list(select), "t": now})
                    return _ok(
                        {
                            "@odata.context": self._context(request, kind, None),
                            "@odata.deltaLink": f"{base}?$deltatoken={token}",
                            "value": [],
                        }
                    )
                payload = self._codec.decode(raw)
                if payload is None or payload.get("k") != kind or "v" not in payload:
                    raise _GraphReply(400, "syncStateNotFound", "The sync state cannot be found. Please re-sync.")
                select = tuple(payload["s"])
                if s.expire_delta_tokens or now - float(payload.get("t", now)) > s.delta_token_lifetime:
                    if s.delta_expired_status == 410:
                        restart = f"{base}?{urlencode([('$select', ','.join(select))], quote_via=quote, safe='$,')}"
                        raise _GraphReply(
                            410,
                            "resyncRequired",
                            "Resync required. Replace any local cached data with the full response.",
                            {"Location": restart},
                        )
                    raise _GraphReply(
                        s.delta_expired_status, "syncStateNotFound", "The sync state cannot be found. Please re-sync."
                    )
                after, upto, pos, moff = int(payload["v"]), t.version, None, 0
            elif "$skiptoken" in q:
                payload = self._codec.decode(q["$skiptoken"])
                if payload is None or payload.get("k") != kind or "a" not in payload:
                    raise _GraphReply(
                        400, "Request_BadRequest", "The specified page token value has expired or is invalid."
                    )
                select = tuple(payload["s"])
                after, upto, pos, moff = int(payload["a"]), int(payload["u"]), int(payload["p"]), int(payload["m"])
            else:
                select = self._select(request, allowed, type_name) or default
                after, upto, pos, moff = 0, t.version, None, 0
            if "id" not in select:
                select = ("id", *select)
            page = t.delta_page(
                kind,
                after=after,
                upto=upto,
                pos=pos,
                moff=moff,
                select=select,
                minimal=minimal,
                page_size=s.delta_page_size,
                members_per_slice=s.delta_members_per_slice,
            )
        body: dict[str, Any] = {"@odata.context": self._context(request, kind, None)}
        if page.next_pos is None:
            token = self._codec.encode({"k": kind, "v": upto, "s": list(select), "t": now})
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        else:
            token = self._codec.encode(
                {"k": kind, "a": after, "u": upto, "p": page.next_pos, "m": page.next_moff, "s": list(select)}
            )
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        body["value"] = page.items
        return _ok(body, headers={"Preference-Applied": "return=minimal"} if minimal else None)

    # ---- knobs and mutations ------------------------------------------------------------------------

    async def _snapshot(self, request: Request) -> Response:
        return Response(_dumps(self.snapshot()), media_type="application/json")

    async def _stats_route(self, request: Request) -> Response:
        return Response(_dumps(self.stats()), media_type="application/json")

    async def _reset(self, request: Request) -> Response:
        self.reset_counters()
        return Response(status_code=204)

    async def _revoke(self, request: Request) -> Response:
        return Response(_dumps({"revoked": self.revoke_tokens()}), media_type="application/json")

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _GraphReply(400, "BadRequest", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _GraphReply(400, "BadRequest", "The request body must be a JSON object.")
        return body

    async def _settings(self, request: Request) -> Response:
        body = await self._json(request)
        with self._lock:
            try:
                changed = self.settings.update(body)
            except ValueError as exc:
                raise _GraphReply(400, "BadRequest", str(exc)) from None
            if "seed" in changed:
                self._rng.seed(self.settings.seed)
            if "rate_limit_rps" in changed:
                self._bucket = (0.0, 0.0)
        return Response(_dumps({"updated": changed}), media_type="application/json")

    def _write(self) -> None:
        self._stats["writes"] += 1

    async def _create_user(self, request: Request) -> Response:
        body = await self._json(request)
        with self._lock:
            self._write()
            user = self._tenant.create_user(body)
        return Response(_dumps(user), status_code=201, media_type="application/json")

    async def _change_user(self, request: Request) -> Response:
        uid = request.path_params["id"]
        if request.method == "DELETE":
            permanent = request.query_params.get("permanent", "false").lower() == "true"
            with self._lock:
                self._write()
                self._tenant.delete_user(uid, permanent=permanent)
            return Response(status_code=204)
        body = await self._json(request)
        with self._lock:
            self._write()
            user = self._tenant.update_user(uid, body)
        return Response(_dumps(user), media_type="application/json")

    async def _create_group(self, request: Request) -> Response:
        body = await self._json(request)
        with self._lock:
            self._write()
            group = self._tenant.create_group(body)
        return Response(_dumps(group), status_code=201, media_type="application/json")

    async def _change_group(self, request: Request) -> Response:
        gid = request.path_params["id"]
        if request.method == "DELETE":
            with self._lock:
                self._write()
                self._tenant.delete_group(gid)
            return Response(status_code=204)
        body = await self._json(request)
        with self._lock:
            self._write()
            group = self._tenant.update_group(gid, body)
        return Response(_dumps(group), media_type="application/json")

    async def _add_member(self, request: Request) -> Response:
        body = await self._json(request)
        member = body.get("id")
        if not isinstance(member, str):
            raise _GraphReply(400, "BadRequest", 'Give the member as {"id": "..."}.')
        with self._lock:
            self._write()
            self._tenant.add_member(request.path_params["id"], member)
        return Response(status_code=204)

    async def _remove_member(self, request: Request) -> Response:
        with self._lock:
            self._write()
            self._tenant.remove_member(request.path_params["id"], request.path_params["member_id"])
        return Response(status_code=204)


#: Which application permissions let an app read a path (any one suffices), as Graph documents them.
_USER_READ = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"})
_GROUP_READ = frozenset(
    {"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)


def _missing_permission(path: str, granted: list[str]) -> str | None:
    """The permission a request to ``path`` lacks (``None`` when the app may read it)."""
    have = set(granted)
    if path.startswith("/v1.0/groups") or path.endswith(("/transitiveMemberOf", "/memberOf")):
        return None if have & _GROUP_READ else "GroupMember.Read.All"
    if path.startswith("/v1.0/users"):
        return None if have & _USER_READ else "User.Read.All"
    return None


class _Edge:
    """Pure ASGI middleware: request ids, counting, latency, auth and fault injection."""

    def __init__(self, app: ASGIApp, emulator: GraphEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = str(uuid.uuid4())
        client_request_id = headers.get("client-request-id") or request_id
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["client_request_id"] = client_request_id
        path: str = scope.get("path", "")
        extra = [
            (b"request-id", request_id.encode()),
            (b"client-request-id", client_request_id.encode("latin-1")),
        ]
        if path.startswith("/v1.0/"):
            extra.append((b"odata-version", b"4.0"))

        emu = self.emulator
        arrived = time.monotonic()
        latency = 0.0 if path.startswith("/_emulator/") else emu.settings.latency

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The answer leaves ``latency`` after the request arrived, the emulator's own work included.
                if latency > 0:
                    await answer_at(arrived + latency)
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        refused = emu._admit(path, headers.get("authorization"))
        if refused is not None:
            status, code, message, extra_headers = refused
            response = _graph_error(Request(scope), status, code, message, extra_headers)
            await response(scope, receive, send_with_ids)
            return
        await self.app(scope, receive, send_with_ids)
