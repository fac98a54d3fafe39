"""SuperOffice system-user authentication as an ``httpx.Auth`` (reference/superoffice.md §4).

Flow:

1. Sign ``"{system_user_token}.{UTC yyyyMMddHHmm}"`` with the app's RSA key (RSA-SHA256, PKCS#1 v1.5),
   Base64 → ``token.timestamp.signature``.
2. ``POST {login_url}/api/PartnerSystemUser/Authenticate`` with ``{"SignedSystemToken", "ApplicationToken",
   "ContextIdentifier", "ReturnTokenType": "JWT"}``. The answer is read as SuperOffice's sample shows it:
   ``{"IsSuccessful": true, "ErrorMessage": "", "Token": "<jwt>"}``; ``IsSuccessful: false`` (with any
   status) or a 4xx is an :class:`AuthError` carrying the server's ``ErrorMessage``.
3. Validate the JWT (RS256) against ``{login_url}/.well-known/jwks`` by ``kid`` (re-read once on an unknown
   kid: key rotation), issuer = the login service's origin, audience = the app's ``client_id`` (always
   checked: without a client id there is no login), 5 minutes of leeway. The ticket is the claim ``http://schemes.superoffice.net/identity/ticket``.
4. Every Web API request carries ``Authorization: SOTicket <ticket>`` and ``SO-AppToken: <client secret>``.

The ticket is cached (tickets last 6 hours, sliding on use). It is renewed only on a 401 or when it has
not been used for ``idle_lifetime`` seconds. Renewal is single-flight: threads that saw a 401 with the same
stale ticket wait on one lock and the first renews it for all of them. No secret, signature, JWT or ticket
is ever logged or put in an error message.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from scimflow.connectors.errors import AuthError
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, send

__all__ = ["TICKET_CLAIM", "SystemUserAuth", "sign_system_user_token"]

log = logging.getLogger("scimflow.superoffice.auth")

TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
LEEWAY_SECONDS = 300
DEFAULT_IDLE_LIFETIME = 6 * 3600 - 300  # renew a little before SuperOffice's 6-hour sliding expiry


def sign_system_user_token(
    system_user_token: str, private_key_pem: str | bytes, *, now: dt.datetime | None = None
) -> str:
    """Return ``token.timestamp.signature`` as SuperOffice's ``sign-system-user-token.md`` describes.

    Raises:
        AuthError: the private key cannot be read or is not an RSA key (the message names no key material).
    """
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    stamp = when.strftime("%Y%m%d%H%M")
    pem = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise AuthError("the SuperOffice app private key is not a readable unencrypted PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError("the SuperOffice app private key must be an RSA key")
    signature = key.sign(f"{system_user_token}.{stamp}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{system_user_token}.{stamp}.{base64.b64encode(signature).decode('ascii')}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SystemUserAuth(httpx.Auth):
    """Attach a SuperOffice ticket and app token to every request; renew the ticket once on 401.

    Args:
        login: an ``httpx.Client`` for the login service (no auth of its own).
        login_url: e.g. ``https://sod.superoffice.com/login``.
        context_identifier: the tenant, e.g. ``Cust12345``.
        client_id: the app's client id, the JWT audience (required: ``None`` or empty is an :class:`AuthError`).
        secrets: a callable returning ``(app_token, system_user_token, private_key_pem)``; called only when a
            ticket is needed, so secrets are read late and never stored beyond the app token.
    """

    def __init__(
        self,
        *,
        login: httpx.Client,
        login_url: str,
        context_identifier: str,
        client_id: str | None,
        secrets: Callable[[], tuple[str, str, str]],
        policy: RetryPolicy = DEFAULT_POLICY,
        idle_lifetime: float = DEFAULT_IDLE_LIFETIME,
    ) -> None:
        self._login = login
        self._login_url = login_url.rstrip("/")
        self._ctx = context_identifier
        if not client_id:
            raise AuthError(
                "superoffice.client_id is not set: it is the app's client id (Developer Portal), the audience "
                "every SuperOffice login token is checked against"
            )
        self._client_id: str = client_id
        self._secrets = secrets
        self._policy = policy
        self._idle = idle_lifetime
        self._lock = threading.Lock()
        self._ticket: str | None = None
        self._app_token: str | None = None
        self._used_at = 0.0
        self._jwks: jwt.PyJWKSet | None = None
        self.authentications = 0  # how many times a ticket was obtained (tests, diagnostics)

    # httpx calls this for sync clients; it does I/O (login) and takes a lock, so it is overridden directly.
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        ticket, app_token = self._current(stale=None)
        self._apply(request, ticket, app_token)
        response = yield request
        if response.status_code == 401:
            log.info("SuperOffice answered 401; renewing the ticket")
            ticket, app_token = self._current(stale=ticket)
            self._apply(request, ticket, app_token)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> Any:  # pragma: no cover - sync client only
        raise NotImplementedError("SystemUserAuth supports the sync httpx.Client only")
        yield request

    @staticmethod
    def _apply(request: httpx.Request, ticket: str, app_token: str) -> None:
        request.headers["Authorization"] = f"SOTicket {ticket}"
        request.headers["SO-AppToken"] = app_token

    def ensure_ticket(self) -> None:
        """Log in now unless a fresh ticket is cached (before requests are sent side by side: one login)."""
        self._current(stale=None)

    def invalidate(self) -> None:
        """Forget the cached ticket (the next request authenticates again)."""
        with self._lock:
            self._ticket = None

    def _current(self, *, stale: str | None) -> tuple[str, str]:
        with self._lock:
            now = time.monotonic()
            fresh = self._ticket is not None and now - self._used_at < self._idle
            if not fresh or (stale is not None and self._ticket == stale):
                self._ticket = self._authenticate()
            self._used_at = now
            assert self._ticket is not None
            assert self._app_token is not None
            return self._ticket, self._app_token

    # ------------------------------------------------------------------ the login service
    def _authenticate(self) -> str:
        app_token, system_user_token, private_key = self._secrets()
        self._app_token = app_token
        url = f"{self._login_url}/api/PartnerSystemUser/Authenticate"
        body = {
            "SignedSystemToken": sign_system_user_token(system_user_token, private_key),
            "ApplicationToken": app_token,
            "ContextIdentifier": self._ctx,
            "ReturnTokenType": "JWT",
        }
        response = send(
            self._login, "POST", url, json=body, policy=self._policy, ok_statuses=frozenset({400, 401, 403})
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AuthError(
                "the login service did not answer with a JSON object",
                method="POST",
                url=url,
                status=response.status_code,
            )
        if response.status_code >= 400 or not answer.get("IsSuccessful") or not answer.get("Token"):
            reason = str(answer.get("ErrorMessage") or answer.get("Error") or "refused")[:200]
            raise AuthError(
                f"system-user authentication refused ({reason})", method="POST", url=url, status=response.status_code
            )
        ticket = self._validate(str(answer["Token"]))
        self.authentications += 1
        log.info("obtained a SuperOffice ticket for %s", self._ctx)
        return ticket

    def _keys(self, *, refresh: bool) -> jwt.PyJWKSet:
        if self._jwks is None or refresh:
            url = f"{self._login_url}/.well-known/jwks"
            response = send(self._login, "GET", url, policy=self._policy)
            try:
                self._jwks = jwt.PyJWKSet.from_dict(response.json())
            except (ValueError, jwt.PyJWKSetError) as exc:
                raise AuthError(
                    f"the login service's JWKS is unusable ({type(exc).__name__})", method="GET", url=url
                ) from None
        return self._jwks

    def _validate(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the login service returned a malformed JWT") from None
        if header.get("alg") != "RS256":
            raise AuthError("the login service's JWT is not RS256")
        kid = header.get("kid")
        key = self._find(self._keys(refresh=False), kid) or self._find(self._keys(refresh=True), kid)
        if key is None:
            raise AuthError("the JWT's signing key is not in the login service's JWKS")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=["RS256"],
                issuer=_origin(self._login_url),
                audience=self._client_id,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"the login service's JWT did not validate ({type(exc).__name__})") from None
        ticket = claims.get(TICKET_CLAIM)
        if not isinstance(ticket, str) or not ticket:
            raise AuthError("the JWT has no SuperOffice ticket claim")
        return ticket

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: Any) -> jwt.PyJWK | None:
        for k in keys.keys:
            if kid is None or k.key_id == kid:
                return k
        return None
