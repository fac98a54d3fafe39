"""The identity platform half of the emulator: OIDC discovery and the client-credentials token endpoint.

msal must accept it unchanged (reference/graph.md §5): discovery at
``/{tenant}/v2.0/.well-known/openid-configuration`` with ``authorization_endpoint``, ``token_endpoint``
and ``issuer``; the token endpoint takes a form POST with ``client_secret`` or a client assertion
(``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``). An assertion is an
RS256 JWT whose ``x5t`` header is the base64url SHA-1 thumbprint of a configured certificate (PS256 with
``x5t#S256`` is accepted too, as msal uses it without a thumbprint); ``aud`` must be the token endpoint,
``iss`` = ``sub`` = the client id, ``exp`` in the future. Errors follow Entra's shape
(``error``, ``error_description`` with an AADSTS code, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``); ``invalid_client`` is a 401, as Entra sends it. Tokens are opaque random strings.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from scimflow.emulators.graph._settings import GraphEmulatorSettings

__all__ = ["TokenStore", "discovery_document", "issue_token"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def discovery_document(origin: str, tenant: str) -> dict[str, Any]:
    """The OIDC metadata msal reads when built with ``instance_discovery=False``."""
    base = f"{origin}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "issuer": f"{base}/v2.0",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_region_scope": "EU",
    }


class TokenStore:
    """Issued access tokens and their expiry (wall clock). Not thread-safe: the emulator holds a lock."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}

    def issue(self, lifetime: int) -> str:
        now = time.time()
        if len(self._tokens) > 10_000:  # forget expired ones now and then
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
        token = "emu." + secrets.token_urlsafe(32)
        self._tokens[token] = now + lifetime
        return token

    def check(self, token: str) -> str | None:
        """``None`` when valid, else the reason (Graph's message) it is refused."""
        expires = self._tokens.get(token)
        if expires is None:
            return "Access token validation failure. Invalid audience."
        if expires <= time.time():
            return "Lifetime validation failed, the token is expired."
        return None

    def revoke_all(self) -> int:
        n = len(self._tokens)
        self._tokens.clear()
        return n


def _error(status: int, error: str, code: int, description: str) -> tuple[int, dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    trace = str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {uuid.uuid4()} "
        f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [code],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
        "error_uri": "https://login.microsoftonline.com/error?code=" + str(code),
    }


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_assertion(
    assertion: str, settings: GraphEmulatorSettings, token_endpoint: str
) -> tuple[int, dict[str, Any]] | None:
    """``None`` when the client assertion is valid, else the error reply."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return _error(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
    alg = header.get("alg")
    pem: bytes | None = None
    try:
        if header.get("x5t") and alg == "RS256":
            thumb = _b64url_decode(str(header["x5t"])).hex().upper()
            registered = {k.replace(":", "").upper(): v for k, v in settings.certificate_thumbprints.items()}
            pem = registered.get(thumb)
        elif header.get("x5t#S256") and alg == "PS256":
            want = _b64url_decode(str(header["x5t#S256"]))
            for candidate in settings.certificate_thumbprints.values():
                cert = x509.load_pem_x509_certificate(candidate)
                if hmac.compare_digest(cert.fingerprint(hashes.SHA256()), want):
                    pem = candidate
                    break
    except ValueError:
        pem = None
    if pem is None:
        return _error(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        )
    cert = x509.load_pem_x509_certificate(pem)
    now = dt.datetime.now(dt.UTC)
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        return _error(401, "invalid_client", 700027, "The certificate used to sign the client assertion has expired.")
    try:
        claims = jwt.decode(
            assertion,
            key=cert.public_key(),  # type: ignore[arg-type]
            algorithms=[str(alg)],
            audience=token_endpoint,
            issuer=settings.client_id,
            options={"require": ["exp", "aud", "iss", "sub"]},
            leeway=300,
        )
    except jwt.ExpiredSignatureError:
        return _error(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
    except jwt.PyJWTError:
        return _error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
    if claims.get("sub") != settings.client_id:
        return _error(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    return None


def issue_token(
    form: dict[str, str], *, tenant: str, settings: GraphEmulatorSettings, token_endpoint: str, store: TokenStore
) -> tuple[int, dict[str, Any]]:
    """Handle one client-credentials token request; returns ``(status, JSON body)``."""
    if tenant.lower() != settings.tenant_id.lower():
        return _error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    if form.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    if form.get("client_id") != settings.client_id:
        return _error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form.get('client_id', '')[:64]}' was not found in the directory '{tenant}'.",
        )
    scopes = form.get("scope", "").split()
    if not scopes or any(not s.endswith("/.default") for s in scopes):
        return _error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    secret = form.get("client_secret")
    if secret is not None:
        expected = settings.client_secret
        if expected is None or not hmac.compare_digest(
            hashlib.sha256(secret.encode()).digest(), hashlib.sha256(expected.encode()).digest()
        ):
            return _error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
                "not the client secret ID, for a secret added to app.",
            )
    elif form.get("client_assertion_type") == JWT_BEARER and form.get("client_assertion"):
        refused = _check_assertion(form["client_assertion"], settings, token_endpoint)
        if refused is not None:
            return refused
    else:
        return _error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    lifetime = int(settings.token_lifetime)
    return 200, {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": store.issue(lifetime),
    }
