"""The Web API client of the SuperOffice target: retried requests, JSON bodies, JSON Patch, archive pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from scimflow.connectors.errors import ConflictError, PayloadError
from scimflow.connectors.http import RetryPolicy, send
from scimflow.connectors.superoffice._pages import ArchivePaginator

__all__ = ["WebApi"]

_CONFLICT = frozenset({409, 412})


class WebApi:
    """Requests to one tenant's Web API through the retry layer (``client`` carries the ticket auth)."""

    def __init__(self, client: httpx.Client, *, base: str, policy: RetryPolicy) -> None:
        self.client = client
        #: The Web API base URL without a trailing slash (``https://…/Cust12345``).
        self.base = base
        self._policy = policy

    def send(self, method: str, url: str, *, ok: frozenset[int] | None = None, **kwargs: Any) -> httpx.Response:
        """One request through :func:`scimflow.connectors.http.send` (``ok``: statuses the caller reads itself)."""
        return send(self.client, method, url, policy=self._policy, ok_statuses=ok, **kwargs)

    def json(self, response: httpx.Response, kind: type = dict) -> Any:
        """The response body as a JSON ``kind`` (object by default); :class:`PayloadError` otherwise."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, kind):
            raise PayloadError(
                f"expected a JSON {kind.__name__}",
                method=response.request.method,
                url=response.request.url,
                status=response.status_code,
            )
        return body

    def get_json(self, url: str, kind: type = dict, **kwargs: Any) -> Any:
        """``GET url`` and its JSON body."""
        return self.json(self.send("GET", url, **kwargs), kind)

    def patch(self, url: str, ops: list[dict[str, Any]]) -> None:
        """``PATCH url`` with JSON Patch ``ops``; a failed ``test`` (409/412) is a :class:`ConflictError`."""
        response = self.send(
            "PATCH", url, json=ops, ok=_CONFLICT, headers={"Content-Type": "application/json-patch+json"}
        )
        if response.status_code in _CONFLICT:
            raise ConflictError(
                "drift: the object changed while it was being written (JSON Patch test failed)",
                method="PATCH",
                url=response.request.url,
                status=response.status_code,
            )

    def pages(self, paginator: ArchivePaginator) -> Iterator[list[dict[str, Any]]]:
        """Yield the rows of each page ``paginator`` asks for, until it has no next page."""
        while paginator.has_next_page:
            response = self.send("GET", paginator.url, params=paginator.query)
            body = self.json(response)
            rows = paginator.rows(body, response.request.url)
            yield rows
            paginator.update_state(body, rows, response.request.url)

    def rows(self, paginator: ArchivePaginator) -> list[dict[str, Any]]:
        """Every row of every page ``paginator`` asks for."""
        return [r for page in self.pages(paginator) for r in page]
