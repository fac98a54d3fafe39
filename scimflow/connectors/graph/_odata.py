"""The Graph reader's HTTP side: one GET through the retry layer, OData paging, delta rounds, users pages.

:class:`GraphReader` is the base of :class:`~scimflow.connectors.graph.GraphSource` (which decides
*what* to read): it owns the client and the msal auth, counts requests, refuses a nextLink or deltaLink
pointing at another origin than ``entra.graph_url`` (the bearer token never leaves Graph), classifies a
delta request's 4xx as an expired link or not, and parses a users page with Polars straight from the
response bytes. Logs: the method, the sanitised path and counts; never headers or tokens.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import polars as pl

from scimflow.config import EntraConfig
from scimflow.connectors.errors import DeltaExpiredError, PayloadError, UpstreamError
from scimflow.connectors.graph._auth import GraphAuth
from scimflow.connectors.graph._delta import USER_SCHEMA
from scimflow.connectors.http import DEFAULT_POLICY, RetryPolicy, build_client, send

__all__ = ["GraphReader"]

log = logging.getLogger("scimflow.graph")

_EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired"})
_DELTA_STATUSES = frozenset({400, 404, 409, 410})


class GraphReader:
    """Authenticated GETs against Microsoft Graph with OData paging (see the module docstring)."""

    def __init__(
        self,
        config: EntraConfig,
        *,
        ca_bundle: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._config = config
        self._policy = policy
        self.auth = GraphAuth(config, ca_bundle=ca_bundle, transport=transport, policy=policy)
        self._client = build_client(
            base_url=config.graph_url,
            ca_bundle=ca_bundle,
            timeout=config.timeout,
            transport=transport,
            headers={"Accept": "application/json"},
            auth=self.auth,
        )
        self._origin = _origin(config.graph_url)
        self.requests = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client (the process-wide msal app and its token cache stay)."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- HTTP ------------------------------------------------------------------------------------

    def _get(self, url: str, *, headers: dict[str, str] | None = None, delta: bool = False) -> dict[str, Any]:
        response = self._send_get(url, headers=headers, delta=delta)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
            msg = "response is not an OData JSON object"
            raise PayloadError(
                msg,
                method="GET",
                url=response.request.url,
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            )
        return body

    def _send_get(self, url: str, *, headers: dict[str, str] | None = None, delta: bool = False) -> httpx.Response:
        """One GET through the retry layer; delta errors are classified (expired or not)."""
        if url.startswith("http") and _origin(url) != self._origin:
            msg = "refusing a link to another origin than entra.graph_url"
            raise PayloadError(msg, method="GET", url=url)
        self.requests += 1
        response = send(
            self._client,
            "GET",
            url,
            policy=self._policy,
            headers=headers,
            ok_statuses=_DELTA_STATUSES if delta else None,
        )
        rid = response.headers.get("request-id")
        if response.status_code >= 400:  # only delta requests get here
            code = _error_code(response)
            if response.status_code == 410 or code in _EXPIRED_CODES:
                raise DeltaExpiredError(
                    f"delta link expired ({code or 'Gone'})",
                    method="GET",
                    url=response.request.url,
                    status=response.status_code,
                    request_id=rid,
                )
            raise UpstreamError(
                f"unexpected status ({code or response.reason_phrase})",
                method="GET",
                url=response.request.url,
                status=response.status_code,
                request_id=rid,
            )
        return response

    def _pages(self, url: str, *, headers: dict[str, str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``value`` following ``@odata.nextLink`` to the end (a fresh paginator per call)."""
        next_url: str | None = url
        while next_url:
            body = self._get(next_url, headers=headers)
            yield list(body.get("value", []))
            link = body.get("@odata.nextLink")
            next_url = link if isinstance(link, str) and link else None

    def _delta_round(self, url: str) -> tuple[list[dict[str, Any]], str]:
        """Every item of one delta round (to its deltaLink) and that deltaLink; pages may be empty."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        pages = 0
        while next_url:
            body = self._get(next_url, headers={"Prefer": "return=minimal"}, delta=True)
            pages += 1
            items.extend(body.get("value", []))
            delta_link = body.get("@odata.deltaLink")
            if isinstance(delta_link, str) and delta_link:
                log.info("GET %s: %d items in %d pages", urlsplit(url).path, len(items), pages)
                return items, delta_link
            link = body.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                msg = "delta page has neither @odata.nextLink nor @odata.deltaLink"
                raise PayloadError(msg, method="GET", url=next_url)
            next_url = link
        msg = "delta round ended without a deltaLink"  # pragma: no cover - the loop returns or raises
        raise PayloadError(msg, method="GET", url=url)

    def _read_user_pages(self, url: str) -> pl.DataFrame:
        """Users pages parsed by Polars straight from the response bytes (no Python dicts per user)."""
        frames = [pl.DataFrame(schema=USER_SCHEMA)]
        next_url: str | None = url
        while next_url:
            response = self._send_get(next_url)
            frame, link = _users_page(response)
            frames.append(frame)
            next_url = link
        # Identical rows (a page replayed) collapse; two *different* users sharing an id are kept, so
        # validation quarantines both instead of one silently winning.
        return pl.concat(frames, rechunk=True).unique(maintain_order=True)


_USERS_PAGE_SCHEMA = pl.Schema([("@odata.nextLink", pl.String()), ("value", pl.List(pl.Struct(USER_SCHEMA)))])


def _users_page(response: httpx.Response) -> tuple[pl.DataFrame, str | None]:
    """A users page as a frame (ENTRA user columns) and its nextLink; unknown properties are ignored."""
    try:
        page = pl.read_json(io.BytesIO(response.content), schema=_USERS_PAGE_SCHEMA)
        link = page.item(0, "@odata.nextLink") if page.height else None
        users = page.select(pl.col("value").explode()).unnest("value").filter(pl.col("id").is_not_null())
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        msg = f"a users page is not the documented JSON ({type(exc).__name__})"
        raise PayloadError(
            msg,
            method="GET",
            url=response.request.url,
            status=response.status_code,
            request_id=response.headers.get("request-id"),
        ) from exc
    return users, (link or None)


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return str(code) if code else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
