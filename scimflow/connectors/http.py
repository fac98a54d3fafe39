"""The HTTP seam shared by every connector: TLS, client construction, and the one retry layer.

- :func:`ssl_context` trusts the system CAs plus the config's extra ``ca_bundle``; verification is
  always on (there is no switch to turn it off).
- :func:`build_client` builds an ``httpx.Client``; tests and the demo inject a ``transport=``.
- :func:`send` is the single retry layer (stamina): it retries transport errors, 429 and 5xx (honouring
  ``Retry-After``, fractional seconds too), never 400/401/403/404, bounded in attempts and total time,
  and translates what is left into the :mod:`scimflow.connectors.errors` tree.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import stamina

from scimflow.connectors.errors import (
    AuthError,
    NotFoundError,
    ThrottledError,
    UpstreamError,
    sanitize_url,
)

__all__ = [
    "RetryPolicy",
    "RetryableStatus",
    "TokenRedactingFilter",
    "build_client",
    "default_transport",
    "parse_retry_after",
    "send",
    "ssl_context",
]

log = logging.getLogger("scimflow.http")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: A query value whose name ends in "token" (``$deltatoken``, ``%24skiptoken``, ``skipToken``, ...).
_TOKEN_VALUE = re.compile(r"""([?&](?:[\w$%.\-]*token|(?:\$|%24)?filter)=)[^&#\s"<>]+""", re.IGNORECASE)
#: Libraries that log request URLs: httpx (INFO, every request), httpcore, urllib3 (msal's requests).
_URL_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
                "urllib3.connectionpool")  # fmt: skip


class TokenRedactingFilter(logging.Filter):
    """Replace token-bearing query values (Graph's ``$deltatoken`` / ``$skiptoken``) and filters (a SCIM
    ``filter=userName eq "…"``, an OData ``$filter`` naming users: personal data) in a record with ``…``.

    Installed on the loggers of the HTTP libraries (their records carry full URLs), so neither a delta
    link nor a page token reaches any handler at any level, whoever configured the logging.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        lowered = message.lower()
        if "token=" in lowered or "filter=" in lowered:
            redacted = _TOKEN_VALUE.sub(r"\1…", message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def _install_redaction() -> None:
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactingFilter) for f in logger.filters):
            logger.addFilter(TokenRedactingFilter())


_install_redaction()


def ssl_context(ca_bundle: Path | str | None = None) -> ssl.SSLContext:
    """An SSL context with the system trust store plus ``ca_bundle`` (if given). Verification stays on.

    One context per trust store and process, shared (callers must not change it): loading the system CAs
    takes tens of milliseconds and every connector builds a client or two. A bundle file that changed (its
    modification time or size) is loaded anew; one that cannot be read raises as it did the first time.
    """
    if ca_bundle is None:
        return _context(None, None)
    st = Path(ca_bundle).stat()
    return _context(str(ca_bundle), (st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=16)
def _context(ca_bundle: str | None, _version: tuple[int, int] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


def build_client(
    *,
    base_url: str = "",
    ca_bundle: Path | str | None = None,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
    max_connections: int = 16,
) -> httpx.Client:
    """Build the ``httpx.Client`` a connector uses. ``transport`` is the test/emulator seam."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    kwargs: dict[str, Any] = {
        "base_url": base_url,
        "timeout": httpx.Timeout(timeout),
        "headers": headers or {},
        "auth": auth,
        "follow_redirects": False,
        "trust_env": False,  # REQUESTS_CA_BUNDLE & co. must not override our explicit trust store
    }
    if transport is not None:
        kwargs["transport"] = transport
    else:
        kwargs["transport"] = default_transport(ca_bundle, limits)
    return httpx.Client(**kwargs)


def default_transport(ca_bundle: Path | str | None = None, limits: httpx.Limits | None = None) -> httpx.BaseTransport:
    """The connectors' transport: our trust store, no transport retries, and the environment's proxy.

    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (either case) are read here with the standard
    library (:func:`urllib.request.getproxies`), not through httpx's ``trust_env``, which would also let
    ``SSL_CERT_FILE`` and friends replace the trust store. Without a proxy variable this is a plain
    ``httpx.HTTPTransport``; with one, requests to hosts ``NO_PROXY`` does not cover go through a
    CONNECT tunnel, and the TLS inside it is verified against the same trust store.
    """
    verify = ssl_context(ca_bundle)
    limits = limits or httpx.Limits()
    proxies = {s: u for s, u in urllib.request.getproxies().items() if s in ("http", "https") and u}
    if not proxies:
        return httpx.HTTPTransport(verify=verify, limits=limits, retries=0)
    return _ProxyRouter(verify, limits, proxies, urllib.request.getproxies().get("no", ""))


class _ProxyRouter(httpx.BaseTransport):
    """Send each request through the scheme's proxy unless ``NO_PROXY`` covers its host."""

    def __init__(self, verify: ssl.SSLContext, limits: httpx.Limits, proxies: dict[str, str], no_proxy: str) -> None:
        self._direct = httpx.HTTPTransport(verify=verify, limits=limits, retries=0)
        self._proxied = {
            scheme: httpx.HTTPTransport(verify=verify, limits=limits, retries=0, proxy=httpx.Proxy(url))
            for scheme, url in proxies.items()
        }
        self._bypass = {"no": no_proxy} if no_proxy else {}

    def _route(self, url: httpx.URL) -> httpx.BaseTransport:
        proxied = self._proxied.get(url.scheme)
        if proxied is None:
            return self._direct
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        if self._bypass and urllib.request.proxy_bypass_environment(host, self._bypass):  # type: ignore[attr-defined]
            return self._direct
        return proxied

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._route(request.url).handle_request(request)

    def close(self) -> None:
        self._direct.close()
        for transport in self._proxied.values():
            transport.close()


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: seconds (possibly fractional) or an HTTP date. ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds)


class RetryableStatus(Exception):  # noqa: N818 - internal signal, never escapes send()
    """Internal: a response whose status should be retried."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"retryable status {response.status_code}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for the one retry layer. ``max_retry_after`` caps a single server-requested wait."""

    attempts: int = 8
    timeout: float = 120.0
    wait_initial: float = 0.2
    wait_max: float = 10.0
    max_retry_after: float = 60.0


DEFAULT_POLICY = RetryPolicy()


def _backoff_hook(policy: RetryPolicy) -> Any:
    def hook(exc: Exception) -> bool | float:
        if isinstance(exc, RetryableStatus):
            ra = parse_retry_after(exc.response.headers.get("Retry-After"))
            if ra is not None:
                return min(ra, policy.max_retry_after) or 0.001
            return True
        return isinstance(exc, httpx.TransportError) and not _is_tls_failure(exc)

    return hook


def _is_tls_failure(exc: BaseException) -> bool:
    """True when a transport error is a certificate verification failure (never worth retrying)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _request_id(response: httpx.Response, request_id_header: str) -> str | None:
    headers = response.headers
    found: str | None = headers.get(request_id_header) or headers.get("request-id")
    return found


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    request_id_header: str = "request-id",
    ok_statuses: frozenset[int] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request through the retry layer and return a response the caller can use.

    Returns the response when it is 2xx or its status is in ``ok_statuses`` (for statuses the caller
    interprets itself, such as 409 or 410). Retries transport errors, 429 and 5xx; raises
    :class:`ThrottledError` / :class:`UpstreamError` once the budget is spent, :class:`NotFoundError`
    for 404, and :class:`UpstreamError` for other 4xx. 401 is returned to the auth layer inside httpx
    (``httpx.Auth`` flows re-authenticate there) and surfaces here only if it persists.
    """
    ok = ok_statuses or frozenset()
    hook = _backoff_hook(policy)

    def attempt_once() -> httpx.Response:
        response = client.request(method, url, **kwargs)
        if response.status_code in _RETRY_STATUSES and response.status_code not in ok:
            response.read()
            log.info("%s %s -> %s (retrying)", method, sanitize_url(response.request.url), response.status_code)
            raise RetryableStatus(response)
        return response

    last: httpx.Response | None = None
    try:
        # The first attempt runs outside stamina (most requests need no retry, and a retry context per
        # request costs more CPU than the request itself at hundreds per second). When it must be retried,
        # stamina takes over with that failure as its own first attempt, so waits, Retry-After, the attempt
        # count and the time budget are exactly stamina's.
        first: Exception | None = None
        try:
            last = attempt_once()
        except (RetryableStatus, httpx.TransportError) as exc:
            if not hook(exc):
                raise
            first = exc
        if first is not None:
            for attempt in stamina.retry_context(
                on=hook,
                attempts=policy.attempts,
                timeout=policy.timeout,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
            ):
                with attempt:
                    if first is not None:
                        failed, first = first, None
                        raise failed
                    last = attempt_once()
    except RetryableStatus as exc:
        r = exc.response
        cls = ThrottledError if r.status_code == 429 else UpstreamError
        raise cls(
            "gave up after retries",
            method=method,
            url=r.request.url,
            status=r.status_code,
            request_id=_request_id(r, request_id_header),
        ) from None
    except httpx.TransportError as exc:
        if _is_tls_failure(exc):
            raise UpstreamError(
                "TLS certificate not trusted (verification stays on; set ca_bundle to the issuing CA)",
                method=method,
                url=_url_of(client, url),
            ) from exc
        raise UpstreamError(f"transport error {type(exc).__name__}", method=method, url=_url_of(client, url)) from exc
    assert last is not None
    response = last
    status = response.status_code
    if 200 <= status < 300 or status in ok:
        return response
    response.read()
    rid = _request_id(response, request_id_header)
    if status == 404:
        raise NotFoundError("not found", method=method, url=response.request.url, status=status, request_id=rid)
    if status in (401, 403):
        raise AuthError(
            "not authorised" if status == 403 else "authentication refused",
            method=method,
            url=response.request.url,
            status=status,
            request_id=rid,
        )
    raise UpstreamError(
        f"unexpected status: {_error_text(response)}",
        method=method,
        url=response.request.url,
        status=status,
        request_id=rid,
    )


def _url_of(client: httpx.Client, url: str) -> str:
    try:
        return str(client.base_url.join(url))
    except Exception:  # noqa: BLE001 - only used for an error message
        return url


def _error_text(response: httpx.Response) -> str:
    """A short description from a Graph or SuperOffice error body (never the request's secrets)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return f"{err.get('code', '')}: {str(err.get('message', ''))[:200]}".strip(": ")
        if "Error" in body:
            return f"{body.get('ErrorType', '')}: {str(body.get('Error', ''))[:200]}".strip(": ")
    return response.reason_phrase or "error"
