"""App-only authentication to Microsoft Graph: one msal app per process and configuration, as an ``httpx.Auth``.

Choices:

- **One msal app per process and configuration.** :func:`msal_app` caches
  ``ConfidentialClientApplication`` objects in a module-level dict keyed by the authority, client id,
  the credential's *reference* (``env:…``/``file:…``, or the certificate's thumbprint) plus a SHA-256
  digest of the revealed credential, the CA bundle and the injected transport. The digest means a
  rotated secret builds a new app instead of replaying a stale one; it never leaves the key. Because the
  app (and so its in-memory token cache) outlives any one :class:`~._source.GraphSource`, Prefect tasks
  in one process share a token: N tasks within its lifetime cost one token request.
- **msal speaks httpx.** The app gets ``http_client=`` an adapter over a client from
  :func:`scimflow.connectors.http.build_client` (``trust_env=False``, the config's ``ca_bundle``, and
  ``HTTPS_PROXY``/``NO_PROXY`` read explicitly),
  because msal's default ``requests`` session lets ``REQUESTS_CA_BUNDLE`` override the trust store. The
  adapter sends through :func:`scimflow.connectors.http.send`, the one retry layer, and hands every 4xx
  except 429 back to msal, which interprets the identity platform's error bodies itself.
- ``instance_discovery=False`` and ``authority = {authority_host}/{tenant_id}``: msal only fetches the
  tenant's OIDC metadata, never ``login.microsoftonline.com``'s instance discovery.
- **The token rides on an ``httpx.Auth``** whose ``sync_auth_flow`` (not ``auth_flow``: it does I/O and
  holds a lock) asks msal for a token (msal answers from its cache until 5 minutes before expiry), sends
  the request, and on a 401 drops the cached token (``remove_tokens_for_client``) and re-acquires
  **once**, unless another thread already replaced it, then resends. A second 401 is returned to
  :func:`~scimflow.connectors.http.send`, which raises :class:`~scimflow.connectors.errors.AuthError`.
- msal reports failures as dicts (``error``, ``error_description``): they become ``AuthError`` with the
  error code and the AADSTS numbers only. Tokens, secrets and assertions are never logged or put in an
  exception; msal's own debug logging masks them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msal

from scimflow.config import ConfigError, EntraConfig
from scimflow.connectors.errors import AuthError, ConnectorError, UpstreamError, sanitize_url
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, build_client, send

__all__ = ["GraphAuth", "clear_app_cache", "msal_app"]

log = logging.getLogger("scimflow.graph.auth")

#: Statuses msal must see itself (error dicts): every 4xx but 429, which the retry layer handles.
_MSAL_STATUSES = frozenset(range(400, 500)) - {429}


class _MsalHttp:
    """msal's ``http_client``: httpx with our trust store, behind the one retry layer."""

    def __init__(self, client: httpx.Client, policy: RetryPolicy) -> None:
        self._client = client
        self._policy = policy

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any
    ) -> httpx.Response:
        return self._send("POST", url, params=params, data=data, headers=headers, timeout=kwargs.get("timeout"))

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> httpx.Response:
        return self._send("GET", url, params=params, headers=headers, timeout=kwargs.get("timeout"))

    def close(self) -> None:
        self._client.close()

    def _send(
        self, method: str, url: str, *, params: Any, headers: Any, timeout: Any, data: Any = None
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {
            "params": params,
            "headers": {k: str(v) for k, v in (headers or {}).items() if v is not None},
        }
        if isinstance(data, str | bytes):
            kwargs["content"] = data
        elif isinstance(data, dict):  # msal passes the assertion as bytes; httpx would send str(b"...")
            kwargs["data"] = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        elif data is not None:
            kwargs["data"] = data
        if isinstance(timeout, int | float):
            kwargs["timeout"] = timeout
        response = send(self._client, method, url, policy=self._policy, ok_statuses=_MSAL_STATUSES, **kwargs)
        response.read()
        return response


@dataclass
class _AppEntry:
    app: msal.ConfidentialClientApplication
    http: _MsalHttp
    lock: threading.Lock


_APPS: dict[tuple[str, ...], _AppEntry] = {}
_APPS_LOCK = threading.Lock()


def clear_app_cache() -> None:
    """Forget every cached msal app (and close their HTTP clients). For tests and long-lived workers."""
    with _APPS_LOCK:
        entries = list(_APPS.values())
        _APPS.clear()
    for entry in entries:
        entry.http.close()


def _credential(config: EntraConfig) -> tuple[str | dict[str, str], str]:
    """The msal ``client_credential`` and a stable, non-secret reference naming it (for the cache key)."""
    try:
        if config.certificate is not None:
            cert = config.certificate
            credential: dict[str, str] = {
                "private_key": cert.private_key.reveal(),
                "thumbprint": cert.thumbprint.replace(":", "").upper(),
            }
            if cert.passphrase is not None:
                credential["passphrase"] = cert.passphrase.reveal()
            if cert.public_certificate is not None:
                credential["public_certificate"] = cert.public_certificate.reveal()
            return credential, f"certificate:{credential['thumbprint']}:{cert.private_key}"
        assert config.client_secret is not None  # the config validator guarantees one credential
        return config.client_secret.reveal(), f"secret:{config.client_secret}"
    except ConfigError as exc:  # names the reference, never the value
        raise AuthError(f"cannot read the Entra credential ({exc})") from None


def _digest(credential: str | dict[str, str]) -> str:
    raw = credential if isinstance(credential, str) else "\x00".join(f"{k}={v}" for k, v in sorted(credential.items()))
    return hashlib.sha256(raw.encode()).hexdigest()


def msal_app(
    config: EntraConfig,
    *,
    ca_bundle: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> tuple[msal.ConfidentialClientApplication, threading.Lock]:
    """The process-wide msal app for this configuration (built on first use), and its lock.

    Raises:
        AuthError: the credential cannot be read, or msal refuses it while building the app.
        UpstreamError: the authority's OIDC metadata cannot be fetched (TLS, network, 5xx).
    """
    authority = f"{config.authority_host}/{config.tenant_id}"
    credential, reference = _credential(config)
    key = (
        authority,
        config.client_id,
        reference,
        _digest(credential),
        str(ca_bundle or ""),
        str(id(transport)) if transport is not None else "",
        _digest(repr(sorted(urllib.request.getproxies().items()))),  # a changed proxy setting: a new client
    )
    with _APPS_LOCK:
        entry = _APPS.get(key)
        if entry is not None:
            return entry.app, entry.lock
        client = build_client(ca_bundle=ca_bundle, timeout=config.timeout, transport=transport)
        http = _MsalHttp(client, policy)
        try:
            app = msal.ConfidentialClientApplication(
                config.client_id,
                client_credential=credential,
                authority=authority,
                instance_discovery=False,
                http_client=http,
                timeout=config.timeout,
            )
        except ConnectorError:
            http.close()
            raise
        except ValueError as exc:  # bad key / thumbprint / metadata; msal's text names no secret, but be safe
            http.close()
            raise AuthError(
                f"msal could not build the app for {sanitize_url(authority)}: {type(exc).__name__}", url=authority
            ) from None
        except httpx.HTTPError as exc:
            http.close()
            raise UpstreamError(f"OIDC metadata unavailable: {type(exc).__name__}", url=authority) from None
        log.info("built msal app for %s (client %s, %s)", sanitize_url(authority), config.client_id, reference)
        entry = _AppEntry(app, http, threading.Lock())
        _APPS[key] = entry
        return app, entry.lock


def _describe(result: dict[str, Any], secret: str | None) -> str:
    """``error`` plus AADSTS codes and a trimmed description, scrubbed of the secret (never the token)."""
    error = str(result.get("error") or "unknown_error")
    codes = result.get("error_codes") or []
    description = str(result.get("error_description") or "").split(" Trace ID:")[0].strip()
    if secret:
        description = description.replace(secret, "***")
    description = description[:300]
    code_text = f" {codes}" if codes else ""
    return f"{error}{code_text}: {description}" if description else f"{error}{code_text}"


class GraphAuth(httpx.Auth):
    """Bearer tokens from the cached msal app; re-acquires once after a 401.

    ``token_requests`` counts the tokens this object had to obtain from the identity provider (cache hits
    are not counted), ``reauthentications`` the 401s it answered by re-acquiring.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        config: EntraConfig,
        *,
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._config = config
        self._ca_bundle = ca_bundle
        self._transport = transport
        self._policy = policy
        self._scopes = [f"{config.graph_url}/.default"]
        self.token_requests = 0
        self.reauthentications = 0
        self._entry: tuple[msal.ConfidentialClientApplication, threading.Lock] | None = None

    def _app(self) -> tuple[msal.ConfidentialClientApplication, threading.Lock]:
        # Looked up once per source: the lookup reveals the credential (a Prefect Secret read, say).
        if self._entry is None:
            self._entry = msal_app(
                self._config, ca_bundle=self._ca_bundle, transport=self._transport, policy=self._policy
            )
        return self._entry

    def _acquire(self, app: msal.ConfidentialClientApplication) -> str:
        try:
            result = app.acquire_token_for_client(scopes=self._scopes)
        except ConnectorError:
            raise
        except (httpx.HTTPError, ValueError) as exc:
            raise AuthError(f"token request failed: {type(exc).__name__}", url=self._config.authority_host) from None
        if not isinstance(result, dict) or "access_token" not in result:
            secret = None
            if self._config.client_secret is not None:
                try:
                    secret = self._config.client_secret.reveal()
                except ConfigError:
                    secret = None
            detail = _describe(result if isinstance(result, dict) else {}, secret)
            raise AuthError(
                f"Entra refused the token request ({detail})",
                method="POST",
                url=f"{self._config.authority_host}/{self._config.tenant_id}/oauth2/v2.0/token",
            )
        if result.get("token_source") != "cache":
            self.token_requests += 1
            log.info("acquired a Graph token from the identity provider (expires in %s s)", result.get("expires_in"))
        return str(result["access_token"])

    def token(self) -> str:
        """A valid access token (from msal's cache when it has one)."""
        app, lock = self._app()
        with lock:
            return self._acquire(app)

    def _refresh(self, failed: str) -> str:
        app, lock = self._app()
        with lock:
            current = self._acquire(app)
            if current != failed:  # another request already replaced the rejected token
                return current
            app.remove_tokens_for_client()
            self.reauthentications += 1
            log.info("Graph answered 401: dropped the cached token, acquiring a new one")
            return self._acquire(app)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = f"Bearer {self._refresh(token)}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> Any:  # pragma: no cover - sync clients only
        msg = "GraphAuth is for synchronous clients"
        raise RuntimeError(msg)
        yield request  # makes this an async generator, as httpx expects
