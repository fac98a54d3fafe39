"""The SCIM emulator: scim2-server's SCIM 2.0 service provider behind the emulators' knobs, as one ASGI app.

URLs on one origin: the SCIM endpoints under ``/scim/v2`` (``/Users``, ``/Groups``, ``/Schemas``,
``/ResourceTypes``, ``/ServiceProviderConfig``, ``/Bulk``; the ``/v2`` is optional, as in scim2-server), and
``/_emulator/{snapshot,settings,stats,reset-counters}`` (no auth, loopback only).

- The SCIM protocol is scim2-server's (:class:`scim2_server.applications.asgi.ASGIApplication` over its
  in-memory storage), under the strict policy for ``dialect="rfc"`` and the Entra-tolerant one for ``"entra"``
  (see :mod:`scimflow.emulators.scim._server`).
- Every SCIM request needs ``Authorization: Bearer <token>`` (401 SCIM Error otherwise), except
  ``/ServiceProviderConfig`` (RFC 7643 §5).
- ``list_users=False`` refuses ``GET /Users`` without a filter (``list_refused_status``, 403 or 400) as some
  providers do; filter look-ups still work.
- Knobs apply to every SCIM request: the ``rate_limit_rps`` token bucket and ``throttle_rate`` (429 + a
  ``Retry-After`` and a SCIM Error body), then ``error_rate`` (503); every answer leaves ``latency`` seconds
  after its request arrived.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any

from scim2_server.memory import AsyncInMemoryStorage
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from scimflow.emulators.scim._server import Dialect, ScimServerApp, dump, load_resources, scim_provider, store
from scimflow.emulators.scim._storage import FastCopyStorage
from scimflow.emulators.serve import DateHeader, answer_at

__all__ = ["SCIM_PATH", "ScimEmulator", "ScimEmulatorSettings"]

log = logging.getLogger("scimflow.emulators.scim")

#: Where the SCIM endpoints live on the emulator's origin: the config's ``scim.base_url`` is origin + this.
SCIM_PATH = "/scim/v2"
_LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
_SCIM_MEDIA = "application/scim+json"


@dataclass
class ScimEmulatorSettings:
    """What the emulator accepts and how it misbehaves; every field but ``dialect`` can change at run time."""

    dialect: Dialect = "rfc"  # rfc: scim2-server's strict policy; entra: the Entra-tolerant ScimPolicy
    token: str | None = None  # the bearer token accepted (None: every SCIM request is refused)
    list_users: bool = True  # False: GET /Users without a filter is refused (filter look-ups still work)
    list_refused_status: int = 403  # the status of that refusal: 403 (forbidden) or 400 (tooMany)
    latency: float = 0.0  # seconds from a request's arrival to its answer, processing included
    throttle_rate: float = 0.0  # fraction of SCIM requests answered 429
    retry_after: str = "1"  # Retry-After sent with 429 and 503
    error_rate: float = 0.0  # fraction answered 503
    rate_limit_rps: float | None = None  # token bucket; beyond it 429 with Retry-After
    throttle_next: int = 0  # the next N SCIM requests are answered 429 (a deterministic storm)
    error_next: int = 0  # the next N SCIM requests are answered 503 (a deterministic burst)
    clock_offset: float = 0.0  # seconds this server's clock is off (its Date header)
    fast_member_patches: bool = True  # member-only PATCHes of Groups on a window of the group (see _members)
    seed: int | None = None  # seeds the random fault injection


_SECRET_SETTINGS = ("token",)
_FIXED_SETTINGS = ("dialect",)


def _scim_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status), "detail": detail}
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=_SCIM_MEDIA)


class ScimEmulator:
    """A stateful SCIM 2.0 service provider (scim2-server) with the emulators' knobs (see the module docstring).

    Args:
        data: the starting Users and Groups, ``{"users": [...], "groups": [...]}`` (the snapshot format;
            empty lists for an empty start).
        settings: the settings (default: strict ``rfc`` policy, no token accepted).
    """

    def __init__(self, data: dict[str, Any] | None = None, settings: ScimEmulatorSettings | None = None) -> None:
        self.settings = settings or ScimEmulatorSettings()
        self._lock = threading.Lock()
        self.provider = scim_provider(self.settings.dialect)
        self.storage = FastCopyStorage()  # scim2-server's in-memory storage, cheaper copies
        store(self.storage, load_resources(self.provider, data or {}, "SCIM fixture"), self.provider)
        self.scim = ScimServerApp(AsyncInMemoryStorage(self.storage), self.provider)
        self._apply_settings()
        self._random = random.Random(self.settings.seed)  # noqa: S311 - fault injection, not security
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._writes_in_flight = 0
        self.request_count = 0
        self._stats: dict[str, int] = {}
        self._endpoints: Counter[str] = Counter()
        self._busy: defaultdict[str, float] = defaultdict(float)
        self._reset_stats()
        routes = [
            Route("/_emulator/snapshot", self._snapshot_route, methods=["GET"]),
            Route("/_emulator/settings", self._settings_route, methods=["GET", "POST"]),
            Route("/_emulator/stats", self._stats_route, methods=["GET"]),
            Route("/_emulator/reset-counters", self._reset_route, methods=["POST"]),
            Mount(SCIM_PATH.removesuffix("/v2"), app=self._scim_endpoint),
        ]
        self.app = Starlette(routes=routes, middleware=[Middleware(DateHeader, offset=self._clock_offset)])

    # ------------------------------------------------------------------ public helpers
    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every User and Group as SCIM JSON: ``{"users": [...], "groups": [...]}`` (loads back as a fixture)."""
        return dump(self.storage, self.provider)

    def load(self, data: dict[str, Any]) -> None:
        """Replace every stored resource by those of ``data`` (the snapshot format)."""
        store(self.storage, load_resources(self.provider, data, "SCIM data"), self.provider)

    def stats(self) -> dict[str, int]:
        """Counts since the last reset: requests, writes (successful POST/PUT/PATCH/DELETE), faults, and member
        PATCHes served on a window of their group (``windowed_member_patches``)."""
        with self._lock:
            return {"requests": self.request_count, **self._stats, "windowed_member_patches": self.scim.windowed}

    def endpoint_counts(self) -> dict[str, int]:
        """Requests per method and endpoint (``"PATCH /Groups/{id}"``, ``"GET /Users?filter"``)."""
        with self._lock:
            return dict(self._endpoints)

    def busy_ms(self) -> dict[str, float]:
        """Per endpoint label, the milliseconds from each request's arrival to its answer's start, summed: the
        server's own processing (scim2-server's work, and waiting for the event loop), the latency excluded."""
        with self._lock:
            return {k: round(v, 3) for k, v in self._busy.items()}

    def _reset_stats(self) -> None:
        self.request_count = 0
        if hasattr(self, "scim"):
            self.scim.windowed = 0
        self._endpoints = Counter()
        self._busy = defaultdict(float)
        self._stats = {
            "writes": 0,
            "max_writes_in_flight": 0,
            "throttled": 0,
            "errors": 0,
            "unauthorized": 0,
            "refused_listings": 0,
        }

    def _clock_offset(self) -> float:
        return float(self.settings.clock_offset)

    def _apply_settings(self) -> None:
        s = self.settings
        if s.list_refused_status not in (400, 403):
            msg = f"list_refused_status must be 400 or 403, not {s.list_refused_status}"
            raise ValueError(msg)
        self.scim.token = s.token
        self.scim.list_users = bool(s.list_users)
        self.scim.refused_status = int(s.list_refused_status)
        self.scim.member_patches = self.storage if s.fast_member_patches else None

    # ------------------------------------------------------------------ the SCIM endpoints, behind the knobs
    @staticmethod
    def _label(method: str, path: str, query: bytes) -> str:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["scim", "v2"]:
            parts = parts[2:]
        elif parts[:1] == ["scim"]:
            parts = parts[1:]
        shown = "/" + "/".join(parts[:1] + ["{id}" for _ in parts[1:2]] + parts[2:])
        if method == "GET" and b"filter=" in query:
            shown += "?filter"
        return f"{method} {shown}"

    async def _scim_endpoint(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        method = scope["method"]
        write = method in ("POST", "PUT", "PATCH", "DELETE") and not scope["path"].endswith("/.search")
        status_box: list[int] = []
        label = self._label(method, scope["path"], scope.get("query_string", b""))

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_box.append(int(message["status"]))
                busy = (time.monotonic() - arrived) * 1000
                with self._lock:
                    self._busy[label] += busy
            if message["type"] == "http.response.body" and not message.get("more_body") and self.settings.latency:
                # The answer leaves ``latency`` after the request arrived, the emulator's own work included.
                await answer_at(arrived + self.settings.latency)
            await send(message)

        with self._lock:
            self.request_count += 1
            self._endpoints[label] += 1
            fault = self._fault()
            if write and fault is None:
                self._writes_in_flight += 1
                self._stats["max_writes_in_flight"] = max(self._stats["max_writes_in_flight"], self._writes_in_flight)
        if fault is not None:
            await fault(scope, receive, recording_send)
            return
        try:
            await self.scim(scope, receive, recording_send)
        finally:
            with self._lock:
                status = status_box[0] if status_box else 500
                if write:
                    self._writes_in_flight -= 1
                    if status < 300:
                        self._stats["writes"] += 1
                if status == 401:
                    self._stats["unauthorized"] += 1
                elif status in (400, 403) and not self.scim.list_users and label == "GET /Users":
                    self._stats["refused_listings"] += 1

    def _fault(self) -> Response | None:
        """Rate limit, throttling and error injection (called with the lock held)."""
        s = self.settings
        headers = {"Retry-After": s.retry_after}
        if s.throttle_next > 0:
            s.throttle_next -= 1
            self._stats["throttled"] += 1
            return _scim_error(429, "Too many requests", headers)
        if s.error_next > 0:
            s.error_next -= 1
            self._stats["errors"] += 1
            return _scim_error(503, "Service unavailable", headers)
        if s.rate_limit_rps:
            now = time.monotonic()
            capacity = max(1.0, s.rate_limit_rps)
            self._bucket = min(capacity, self._bucket + (now - self._bucket_at) * s.rate_limit_rps)
            self._bucket_at = now
            if self._bucket < 1.0:
                self._stats["throttled"] += 1
                return _scim_error(429, "Too many requests", headers)
            self._bucket -= 1.0
        if s.throttle_rate and self._random.random() < s.throttle_rate:
            self._stats["throttled"] += 1
            return _scim_error(429, "Too many requests", headers)
        if s.error_rate and self._random.random() < s.error_rate:
            self._stats["errors"] += 1
            return _scim_error(503, "Service unavailable", headers)
        return None

    # ------------------------------------------------------------------ /_emulator
    async def _snapshot_route(self, request: Request) -> Response:
        if request.client is not None and request.client.host not in _LOOPBACK:
            return _scim_error(403, "loopback only")
        return JSONResponse(self.snapshot())

    async def _settings_route(self, request: Request) -> Response:
        names = {f.name for f in fields(ScimEmulatorSettings)} - set(_FIXED_SETTINGS)
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return _scim_error(400, "body must be JSON")
            if not isinstance(body, dict) or not set(body) <= names:
                unknown = sorted(set(body) - names) if isinstance(body, dict) else body
                return _scim_error(400, f"unknown or fixed settings: {unknown}")
            with self._lock:
                previous = asdict(self.settings)
                for k, v in body.items():
                    setattr(self.settings, k, v)
                try:
                    self._apply_settings()
                except ValueError as exc:
                    for k, v in previous.items():
                        setattr(self.settings, k, v)
                    self._apply_settings()
                    return _scim_error(400, str(exc))
                if "seed" in body:
                    self._random.seed(self.settings.seed)
        public = {k: v for k, v in asdict(self.settings).items() if k not in _SECRET_SETTINGS}
        return JSONResponse(public)

    async def _stats_route(self, request: Request) -> Response:
        return JSONResponse({**self.stats(), "endpoints": self.endpoint_counts(), "busy_ms": self.busy_ms()})

    async def _reset_route(self, request: Request) -> Response:
        with self._lock:
            self._reset_stats()
        return JSONResponse(self.stats())
