"""One error tree for every connector.

::

    ConnectorError                 anything a connector raises on purpose
    ├── AuthError                  credentials refused, token/ticket could not be obtained (401/403 at login)
    ├── ThrottledError             429 (or 503 with Retry-After) still failing after the retry budget
    ├── UpstreamError              5xx, transport failure or an unexpected status after retries
    │   └── NotFoundError          404 for a specific object
    ├── PayloadError               the server answered, but the body is not what the API documents
    ├── ConflictError              a write's precondition failed (JSON Patch ``test`` → 409, 412): drift
    └── DeltaExpiredError          a Graph delta link is no longer valid (410 / syncStateNotFound)

Every error carries ``method``, a sanitised ``url`` (no query values that could hold tokens), the HTTP
``status`` (or ``None`` for transport errors) and the server's request id when one was sent. Foreign
errors (httpx, msal, pydantic) are translated at one boundary with ``raise ... from exc``. No message ever
contains a token, ticket or secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from scimflow.errors import ScimflowError

__all__ = [
    "AuthError",
    "ConflictError",
    "ConnectorError",
    "DeltaExpiredError",
    "NotFoundError",
    "PayloadError",
    "ThrottledError",
    "UpstreamError",
    "sanitize_url",
]

_SAFE_PARAMS = {"$top", "$select", "$filter", "$skip", "$orderby", "$count", "userType", "personId"}


def sanitize_url(url: object) -> str:
    """Return ``url`` without credentials and with opaque or unknown query values replaced by ``…``.

    ``$skiptoken`` / ``$deltatoken`` values are opaque and may be long; they are elided too.
    """
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = []
    for pair in parts.query.split("&") if parts.query else []:
        name, _, value = pair.partition("=")
        from urllib.parse import unquote

        plain = unquote(name)
        if plain in _SAFE_PARAMS:
            query.append(f"{name}={value}" if len(value) <= 200 else f"{name}=…")
        else:
            query.append(f"{name}=…")
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(query), ""))


class ConnectorError(ScimflowError):
    """Base of the connector error tree."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: object | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.method = method
        self.url = sanitize_url(url) if url is not None else None
        self.status = status
        self.request_id = request_id
        where = " ".join(p for p in (method, self.url) if p)
        extra = []
        if status is not None:
            extra.append(f"status {status}")
        if request_id:
            extra.append(f"request-id {request_id}")
        detail = f" ({', '.join(extra)})" if extra else ""
        super().__init__(f"{message}: {where}{detail}" if where else f"{message}{detail}")


class AuthError(ConnectorError):
    """Credentials were refused or a token/ticket could not be obtained."""


class ThrottledError(ConnectorError):
    """The service kept answering 429 beyond the retry budget."""


class UpstreamError(ConnectorError):
    """A 5xx, a transport failure, or an unexpected status that retries did not cure."""


class NotFoundError(UpstreamError):
    """The object does not exist (404)."""


class PayloadError(ConnectorError):
    """The response body does not have the documented shape."""


class ConflictError(ConnectorError):
    """A write's precondition failed (409 from a JSON Patch ``test``, or 412): the object drifted."""


class DeltaExpiredError(ConnectorError):
    """A delta link expired (410 Gone, ``syncStateNotFound`` or ``resyncRequired``): a full read is needed."""
