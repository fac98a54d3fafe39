"""The SuperOffice emulator: the login service (system-user flow) and the Web API, as one Starlette app.

URLs on one origin (docs/internals.md): ``/login/api/PartnerSystemUser/Authenticate``,
``/login/.well-known/jwks``, and the Web API under ``/{context_identifier}/api/v1/...``.

Choices where SuperOffice's documentation is silent, kept in step with the connector:

- Authenticate answers ``200 {"IsSuccessful": true, "ErrorMessage": "", "Token": "<jwt>"}`` (the shape of
  SuperOffice's sample); a refused request answers ``200 {"IsSuccessful": false, "ErrorMessage": ...,
  "Token": null}`` (a malformed body answers 400). The signed token's timestamp must be within
  ``clock_skew`` seconds of now (default 5 minutes, plus the minute the timestamp truncates).
- The JWT is RS256 with a ``kid`` published in the JWKS; ``iss`` is the origin the request reached,
  ``aud`` the client id; the ticket is in ``http://schemes.superoffice.net/identity/ticket``.
- Tickets slide: each use extends them by ``ticket_lifetime`` seconds. A missing, unknown or expired
  ticket answers 401 ``{"Error", "ErrorType"}``; a wrong ``SO-AppToken`` answers 403.
- Archive lists (``GET /api/v1/User``, ``/api/v1/archive/{provider}``, ``/api/v1/Person``,
  ``/api/v1/Contact``) take ``$select``, ``$filter``, ``$top`` (capped at ``page_size_max``), ``$skip``
  and answer ``{"odata.metadata", "odata.nextLink"?, "value": [...]}``, ordered by primary key.
- Knobs apply to every route except ``/_emulator/``: the ``rate_limit_rps`` token bucket and
  ``throttle_rate`` (429 + ``Retry-After``), then ``error_rate`` (503); every answer leaves ``latency``
  seconds after its request arrived (the emulator's own processing counts towards it).

The module is longer than the project's ~500 lines on purpose: it is one route table and its handlers
(login, archives, User/Person/Contact writes), which read best side by side; the tenant and its indexes
live in :mod:`._state`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scimflow.emulators.serve import DateHeader, answer_at
from scimflow.emulators.superoffice._archive import FilterError
from scimflow.emulators.superoffice._patch import PatchConflict, PatchError, apply_json_patch, apply_merge_patch
from scimflow.emulators.superoffice._state import ApiError, Tenant

__all__ = ["TICKET_CLAIM", "SuperOfficeEmulator", "SuperOfficeEmulatorSettings"]

log = logging.getLogger("scimflow.emulators.superoffice")

TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
_CLAIM_PREFIX = "http://schemes.superoffice.net/identity/"
_LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


@dataclass
class SuperOfficeEmulatorSettings:
    """Emulator settings (docs/internals.md). Secrets left ``None`` refuse every login."""

    context_identifier: str = "Cust12345"
    client_id: str = "00000000-0000-0000-0000-0000000000b1"
    app_token: str | None = None
    system_user_token: str | None = None
    app_public_key_pem: str | bytes | None = None
    ticket_lifetime: int = 6 * 3600
    latency: float = 0.0
    throttle_rate: float = 0.0
    retry_after: str = "1"
    error_rate: float = 0.0
    rate_limit_rps: float | None = None
    page_size_max: int = 1000
    clock_skew: int = 300
    clock_offset: float = 0.0  # seconds this server's clock is off: its Date header and token freshness check
    next_links: bool = True  # send odata.nextLink (False: clients must page with $skip)
    seed: int | None = None


def _error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"Error": message, "ErrorType": error_type}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


class SuperOfficeEmulator:
    """A stateful SuperOffice tenant behind the login service and the Web API (see the module docstring)."""

    def __init__(self, data: dict[str, Any], settings: SuperOfficeEmulatorSettings | None = None) -> None:
        self.settings = settings or SuperOfficeEmulatorSettings()
        self._lock = threading.Lock()
        self._tenant = Tenant(data)
        self._tickets: dict[str, float] = {}
        self._random = random.Random(self.settings.seed)  # noqa: S311 - fault injection, not security
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub_der = self._signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._kid = hashlib.sha256(pub_der).hexdigest()[:16]
        self._writes_in_flight = 0  # not a counter: a reset of the counters leaves requests in flight alone
        self._stats: dict[str, int] = {}
        self._endpoints: Counter[str] = Counter()
        self._reset_stats()
        self.app = Starlette(routes=self._routes(), middleware=[Middleware(DateHeader, offset=self._clock_offset)])

    def _clock_offset(self) -> float:
        return float(self.settings.clock_offset)

    # ------------------------------------------------------------------ public helpers
    def snapshot(self) -> dict[str, Any]:
        """The current data in the fixture format (S.json)."""
        with self._lock:
            return self._tenant.snapshot()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.request_count, **self._stats}

    def expire_tickets(self) -> None:
        """Forget every issued ticket (tests: the next call gets 401 and must re-authenticate)."""
        with self._lock:
            self._tickets.clear()

    def endpoint_counts(self) -> dict[str, int]:
        """Requests per method and endpoint (``"PATCH Person/{id}"``), for benches explaining their figures."""
        with self._lock:
            return dict(self._endpoints)

    def _reset_stats(self) -> None:
        self.request_count = 0
        self._endpoints = Counter()
        self._stats = {
            "writes": 0,
            "max_writes_in_flight": 0,
            "authenticates": 0,
            "auth_failures": 0,
            "throttled": 0,
            "errors": 0,
            "unauthorized": 0,
        }

    # ------------------------------------------------------------------ routing
    def _routes(self) -> list[Route]:
        api = "/{ctx}/api/v1"
        return [
            Route("/_emulator/snapshot", self._snapshot_route, methods=["GET"]),
            Route("/_emulator/settings", self._settings_route, methods=["POST", "GET"]),
            Route("/_emulator/stats", self._stats_route, methods=["GET"]),
            Route("/_emulator/reset-counters", self._reset_route, methods=["POST"]),
            Route(
                "/login/api/PartnerSystemUser/Authenticate", self._wrap(self._authenticate, api=False), methods=["POST"]
            ),
            Route("/login/.well-known/jwks", self._wrap(self._jwks, api=False), methods=["GET"]),
            Route(f"{api}/User", self._wrap(self._users_collection), methods=["GET", "POST"]),
            Route(f"{api}/User/Default", self._wrap(self._user_default), methods=["GET"]),
            Route(api + "/User/{id:int}", self._wrap(self._user_item), methods=["GET", "PUT", "PATCH"]),
            Route(api + "/User/{name}", self._wrap(self._user_by_name), methods=["GET"]),
            Route(api + "/archive/{provider}", self._wrap(self._archive_route), methods=["GET"]),
            Route(f"{api}/Person", self._wrap(self._persons_collection), methods=["GET", "POST"]),
            Route(api + "/Person/{id:int}", self._wrap(self._person_item), methods=["GET", "PUT", "PATCH"]),
            Route(f"{api}/Contact", self._wrap(self._contacts_collection), methods=["GET"]),
            Route(f"{api}/Agents/User/MakeRetired", self._wrap(self._make_retired), methods=["POST"]),
            Route(f"{api}/Agents/User/RemoveLicenses", self._wrap(self._remove_licenses), methods=["POST"]),
            Route(api + "/MDOList/{list}", self._wrap(self._mdo_list), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler, *, api: bool = True) -> Handler:
        def label(request: Request) -> str:
            route = request.scope.get("route")
            path = getattr(route, "path", request.url.path).replace("/{ctx}/api/v1/", "")
            return f"{request.method} {path}"

        async def endpoint(request: Request) -> Response:
            arrived = time.monotonic()
            write = api and request.method != "GET"
            if write:
                with self._lock:
                    self._writes_in_flight += 1
                    self._stats["max_writes_in_flight"] = max(
                        self._stats["max_writes_in_flight"], self._writes_in_flight
                    )
            try:
                response = await answer(request)
                # The answer leaves ``latency`` after the request arrived, the emulator's own work included
                # (a real service's response time includes its processing too).
                if self.settings.latency > 0:
                    await answer_at(arrived + self.settings.latency)
                return response
            finally:
                if write:
                    with self._lock:
                        self._writes_in_flight -= 1

        async def answer(request: Request) -> Response:
            with self._lock:
                self.request_count += 1
                self._endpoints[label(request)] += 1
                fault = self._fault()
            if fault is not None:
                return fault
            if api:
                refused = self._check_api(request)
                if refused is not None:
                    return refused
            try:
                response = await handler(request)
            except ApiError as exc:
                return _error(exc.status, exc.message, exc.error_type)
            except PatchConflict as exc:
                return _error(409, str(exc), "PatchTestFailed")
            except (PatchError, FilterError) as exc:
                return _error(400, str(exc), "BadRequest")
            if api and request.method != "GET" and response.status_code < 300:
                with self._lock:
                    self._stats["writes"] += 1
            return response

        return endpoint

    def _fault(self) -> Response | None:
        """Rate limit, throttling and error injection (called with the lock held)."""
        s = self.settings
        headers = {"Retry-After": s.retry_after}
        if s.rate_limit_rps:
            now = time.monotonic()
            capacity = max(1.0, s.rate_limit_rps)
            self._bucket = min(capacity, self._bucket + (now - self._bucket_at) * s.rate_limit_rps)
            self._bucket_at = now
            if self._bucket < 1.0:
                self._stats["throttled"] += 1
                return _error(429, "Too many requests", "TooManyRequests", headers)
            self._bucket -= 1.0
        if s.throttle_rate and self._random.random() < s.throttle_rate:
            self._stats["throttled"] += 1
            return _error(429, "Too many requests", "TooManyRequests", headers)
        if s.error_rate and self._random.random() < s.error_rate:
            self._stats["errors"] += 1
            return _error(503, "Service unavailable", "ServiceUnavailable")
        return None

    def _check_api(self, request: Request) -> Response | None:
        s = self.settings
        if request.path_params.get("ctx") != s.context_identifier:
            return _error(404, "Unknown tenant", "TenantNotFound")
        auth = request.headers.get("authorization", "")
        scheme, _, ticket = auth.partition(" ")
        now = time.monotonic()
        with self._lock:
            last = self._tickets.get(ticket.strip()) if scheme.lower() == "soticket" else None
            if last is None or now - last > s.ticket_lifetime:
                self._tickets.pop(ticket.strip(), None)
                self._stats["unauthorized"] += 1
                why = "Missing or unknown ticket" if last is None else "Ticket has expired"
                return _error(401, why, "InvalidTicket" if last is None else "TicketExpired")
            self._tickets[ticket.strip()] = now  # sliding expiry
        if s.app_token is None or not secrets.compare_digest(request.headers.get("so-apptoken", ""), s.app_token):
            return _error(403, "Missing or invalid application token (SO-AppToken)", "InvalidApplicationToken")
        return None

    # ------------------------------------------------------------------ /_emulator
    async def _snapshot_route(self, request: Request) -> Response:
        if request.client is not None and request.client.host not in _LOOPBACK:
            return _error(403, "loopback only", "Forbidden")
        return JSONResponse(self.snapshot())

    async def _settings_route(self, request: Request) -> Response:
        names = {f.name for f in fields(SuperOfficeEmulatorSettings)}
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "body must be JSON", "BadRequest")
            if not isinstance(body, dict) or not set(body) <= names:
                return _error(
                    400,
                    f"unknown settings: {sorted(set(body) - names) if isinstance(body, dict) else body}",
                    "BadRequest",
                )
            with self._lock:
                for k, v in body.items():
                    setattr(self.settings, k, v)
        public = {
            k: v
            for k, v in asdict(self.settings).items()
            if k not in ("app_token", "system_user_token", "app_public_key_pem")
        }
        return JSONResponse(public)

    async def _stats_route(self, request: Request) -> Response:
        return JSONResponse({**self.stats(), "endpoints": self.endpoint_counts()})

    async def _reset_route(self, request: Request) -> Response:
        with self._lock:
            self._reset_stats()
        return JSONResponse(self.stats())

    # ------------------------------------------------------------------ login service
    async def _jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key.public_key(), as_dict=True)
        jwk.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [jwk]})

    def _refuse_login(self, message: str) -> Response:
        with self._lock:
            self._stats["auth_failures"] += 1
        return JSONResponse({"IsSuccessful": False, "ErrorMessage": message, "Token": None})

    async def _authenticate(self, request: Request) -> Response:
        s = self.settings
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body must be JSON", "BadRequest")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object", "BadRequest")
        signed = str(body.get("SignedSystemToken") or "")
        parts = signed.rsplit(".", 2)
        if len(parts) != 3:
            return self._refuse_login("SignedSystemToken must be token.timestamp.signature")
        token, stamp, signature = parts
        if s.app_token is None or not secrets.compare_digest(str(body.get("ApplicationToken") or ""), s.app_token):
            return self._refuse_login("Unknown application token")
        if body.get("ContextIdentifier") != s.context_identifier:
            return self._refuse_login("Unknown context identifier")
        if s.system_user_token is None or not secrets.compare_digest(token, s.system_user_token):
            return self._refuse_login("Unknown system user token")
        try:
            when = dt.datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=dt.UTC)
        except ValueError:
            return self._refuse_login("Bad timestamp in the signed system user token")
        server_now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(s.clock_offset))
        if abs((server_now - when).total_seconds()) > s.clock_skew + 60:
            return self._refuse_login("The signed system user token is too old or from the future")
        if not s.app_public_key_pem:
            return self._refuse_login("No public key registered for the application")
        pem = s.app_public_key_pem.encode() if isinstance(s.app_public_key_pem, str) else s.app_public_key_pem
        try:
            public = serialization.load_pem_public_key(pem)
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(
                base64.b64decode(signature, validate=True),
                f"{token}.{stamp}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return self._refuse_login("Signature verification failed")
        ticket = "7T:" + secrets.token_urlsafe(24)
        now = int(time.time())
        origin = f"{request.url.scheme}://{request.url.netloc}"
        claims = {
            "iss": origin,
            "aud": s.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "sub": token.split("-", 1)[0],
            TICKET_CLAIM: ticket,
            _CLAIM_PREFIX + "ctx": s.context_identifier,
            _CLAIM_PREFIX + "webapi_url": f"{origin}/{s.context_identifier}/api/",
            _CLAIM_PREFIX + "is_administrator": "False",
        }
        encoded = jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self._kid})
        with self._lock:
            self._tickets[ticket] = time.monotonic()
            self._stats["authenticates"] += 1
        return JSONResponse({"IsSuccessful": True, "ErrorMessage": "", "Token": encoded})

    # ------------------------------------------------------------------ Web API
    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiError(400, "body must be JSON", "BadRequest") from None

    def _list_response(self, request: Request, provider: str) -> Response:
        q = request.query_params
        select = [c.strip() for c in (q.get("$select") or "").split(",") if c.strip()]
        try:
            top = int(q.get("$top") or self.settings.page_size_max)
            skip = int(q.get("$skip") or 0)
        except ValueError:
            raise ApiError(400, "$top and $skip must be integers", "BadRequest") from None
        top = max(0, min(top, self.settings.page_size_max))
        with self._lock:
            rows, more = self._tenant.archive(provider, select, q.get("$filter"), max(0, skip), top)
        body: dict[str, Any] = {"odata.metadata": "https://www.superoffice.com/superoffice/api/$metadata"}
        if more and self.settings.next_links:
            params = dict(q)
            params["$skip"] = str(skip + len(rows))
            params["$top"] = str(top)
            body["odata.nextLink"] = (
                f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(params, safe='$,()')}"
            )
        body["value"] = rows
        return JSONResponse(body)

    async def _archive_route(self, request: Request) -> Response:
        return self._list_response(request, request.path_params["provider"])

    async def _users_collection(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list_response(request, "AllUsers")
        doc = await self._json(request)
        if not isinstance(doc, dict):
            raise ApiError(400, "body must be a User carrier", "BadRequest")
        with self._lock:
            created = self._tenant.create_user(doc)
        return JSONResponse(created, status_code=201)

    async def _user_default(self, request: Request) -> Response:
        q = request.query_params
        try:
            person_id = int(q.get("personId") or 0)
        except ValueError:
            raise ApiError(400, "personId must be an integer", "BadRequest") from None
        with self._lock:
            return JSONResponse(self._tenant.default_user(q.get("userType") or "InternalAssociate", person_id))

    def _user_or_404(self, aid: int) -> None:
        if aid not in self._tenant.users:
            raise ApiError(404, f"User {aid} not found", "NotFound")

    async def _user_item(self, request: Request) -> Response:
        aid = int(request.path_params["id"])
        if request.method == "GET":
            with self._lock:
                self._user_or_404(aid)
                return JSONResponse(self._tenant.user_carrier(aid))
        body = await self._json(request)
        merge = "merge-patch" in request.headers.get("content-type", "")
        with self._lock:
            self._user_or_404(aid)
            current = self._tenant.user_carrier(aid)
            if request.method == "PUT":
                doc = body
            elif isinstance(body, list):
                doc = apply_json_patch(current, body)
            elif isinstance(body, dict) or merge:
                doc = apply_merge_patch(current, body)
            else:
                raise ApiError(400, "PATCH takes a JSON Patch array or a merge patch object", "BadRequest")
            if not isinstance(doc, dict):
                raise ApiError(400, "body must be a User carrier", "BadRequest")
            return JSONResponse(self._tenant.save_user(aid, doc))

    async def _user_by_name(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        with self._lock:
            aid = self._tenant.by_username.get(name.casefold())
            if aid is None:
                raise ApiError(404, "User not found", "NotFound")
            return JSONResponse(self._tenant.user_carrier(aid))

    async def _persons_collection(self, request: Request) -> Response:
        if request.method == "GET":
            return self._list_response(request, "Person")
        doc = await self._json(request)
        if not isinstance(doc, dict):
            raise ApiError(400, "body must be a PersonEntity", "BadRequest")
        with self._lock:
            return JSONResponse(self._tenant.create_person(doc), status_code=201)

    async def _person_item(self, request: Request) -> Response:
        pid = int(request.path_params["id"])
        body = None if request.method == "GET" else await self._json(request)
        with self._lock:
            if pid not in self._tenant.persons:
                raise ApiError(404, f"Person {pid} not found", "NotFound")
            current = self._tenant.person_entity(pid)
            if request.method == "GET":
                return JSONResponse(current)
            if request.method == "PUT":
                doc = body
            elif isinstance(body, list):
                doc = apply_json_patch(current, body)
            else:
                doc = apply_merge_patch(current, body)
            if not isinstance(doc, dict):
                raise ApiError(400, "body must be a PersonEntity", "BadRequest")
            return JSONResponse(self._tenant.save_person(pid, doc))

    async def _contacts_collection(self, request: Request) -> Response:
        return self._list_response(request, "Contact")

    async def _associate_from_body(self, request: Request) -> tuple[int, dict[str, Any]]:
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("AssociateId"), int):
            raise ApiError(400, "body must be {AssociateId: int, ...}", "BadRequest")
        return int(body["AssociateId"]), body

    async def _make_retired(self, request: Request) -> Response:
        aid, body = await self._associate_from_body(request)
        with self._lock:
            self._user_or_404(aid)
            self._tenant.make_retired(aid, bool(body.get("Retired", True)))
        return Response(status_code=204)

    async def _remove_licenses(self, request: Request) -> Response:
        aid, _ = await self._associate_from_body(request)
        with self._lock:
            self._user_or_404(aid)
            self._tenant.remove_licenses(aid)
        return Response(status_code=204)

    async def _mdo_list(self, request: Request) -> Response:
        name = str(request.path_params["list"]).lower()
        with self._lock:
            if name in ("roles", "role"):
                table = self._tenant.roles
            elif name in ("usergroup", "usergroups"):
                table = self._tenant.groups
            else:
                raise ApiError(404, f"unknown MDO list {name}", "NotFound")
            items: list[dict[str, Any]] = [
                {
                    "Id": k,
                    "Name": v,
                    "ToolTip": "",
                    "Deleted": False,
                    "Rank": i,
                    "Type": "",
                    "ChildItems": [],
                    "IconHint": "",
                    "ExtraInfo": "0" if name.startswith("role") else "",
                    "FullName": v,
                }
                for i, (k, v) in enumerate(table.items(), start=1)
            ]
        return JSONResponse(items)
