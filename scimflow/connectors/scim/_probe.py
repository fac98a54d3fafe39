"""A read-only look at a SCIM server for ``scimflow doctor``: token, listing, ETags, a dialect hint.

Nothing is written. The token check is Entra's "Test Connection": a filter GET for a random ``userName``
that must answer 200 with an empty ListResponse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from scimflow.connectors.errors import NotFoundError, PayloadError, UpstreamError
from scimflow.connectors.scim._client import ListingRefusedError, ScimClient
from scimflow.connectors.scim._mapping import escape_filter_value

__all__ = ["ScimProbe", "probe"]


@dataclass(frozen=True)
class ScimProbe:
    """What :func:`probe` found.

    ``token_accepted``: the random-``userName`` filter GET answered 200 with an empty ListResponse (an
    :class:`~scimflow.connectors.errors.AuthError` is raised instead when the token is refused).
    ``listing``: an unfiltered ``GET /Users`` is answered (``False``: refused, users are looked up by filter).
    ``service_provider_config``: ``/ServiceProviderConfig`` is served; ``etags`` / ``patch`` its flags
    (``None`` when it is not served). ``dialect_hint``: ``rfc`` when the server describes itself (a generic
    RFC 7644 server), else ``entra`` (what SuperOffice's gateway is built for); a hint, not a test.
    """

    token_accepted: bool
    listing: bool
    service_provider_config: bool
    etags: bool | None
    patch: bool | None
    dialect_hint: str
    notes: list[str] = field(default_factory=list)


def _flag(config: dict[str, Any], name: str) -> bool | None:
    value = config.get(name)
    return bool(value.get("supported")) if isinstance(value, dict) else None


def probe(client: ScimClient) -> ScimProbe:
    """Probe the server behind ``client`` with three GETs; raises ``AuthError`` when the token is refused."""
    notes: list[str] = []
    random_name = f"scimflow-probe-{secrets.token_hex(8)}@invalid"
    response = client._request("GET", "Users", params=[("filter", f"userName eq {escape_filter_value(random_name)}")])
    client._raise_for(response)
    body = client._json(response)
    empty = body.get("totalResults") == 0 and not body.get("Resources")
    if not empty:
        notes.append("the filter GET for a random userName did not answer an empty ListResponse")

    try:
        next(client._pages("Users", count=1), None)  # the first page only
        listing = True
    except ListingRefusedError:
        listing = False
        notes.append("listing /Users is refused: users are looked up one by one (userName, then externalId)")

    config: dict[str, Any] | None
    try:
        answer = client._request("GET", "ServiceProviderConfig")
        client._raise_for(answer)
        config = client._json(answer)
    except (NotFoundError, PayloadError, UpstreamError):
        config = None
        notes.append("no /ServiceProviderConfig (as expected of SuperOffice's gateway): no ETags are used")
    etags = _flag(config, "etag") if config is not None else None
    patch = _flag(config, "patch") if config is not None else None
    return ScimProbe(
        token_accepted=empty,
        listing=listing,
        service_provider_config=config is not None,
        etags=etags,
        patch=patch,
        dialect_hint="rfc" if config is not None else "entra",
        notes=notes,
    )
