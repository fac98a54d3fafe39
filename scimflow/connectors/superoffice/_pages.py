"""Archive paging: one explicit paginator per archive the target reads (User, Person, Contact).

A paginator is a small state machine in the manner of dlt's REST client (STYLE.md §4): it holds the next
request (:attr:`ArchivePaginator.url` / :attr:`ArchivePaginator.query`), checks each page's rows
(:meth:`ArchivePaginator.rows`), and :meth:`ArchivePaginator.update_state` moves it to the next page or
clears :attr:`ArchivePaginator.has_next_page`. :meth:`scimflow.connectors.superoffice._api.WebApi.pages`
drives it. A paginator is built for one read and never reused, so no state leaks between reads.

A page of every archive looks like::

    {"odata.nextLink": "https://…/api/v1/User?$skip=1000&…",   # only on servers that send next links
     "value": [{"associateDbId": 11, "assocName": "KN", …}, …]}

The next page is the ``odata.nextLink`` when the server sends one (followed only on the Web API's own
origin, so the ticket never leaves it); a server that sends next links ends with a page without one.
Otherwise the next page is asked with ``$skip``, and paging stops at an empty page, at one shorter than
the largest seen (the server may cap ``$top`` below what was asked without saying so), or once
``at_most`` rows arrived (an ``oneOf`` filter bounds its result).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from scimflow.connectors.errors import PayloadError
from scimflow.connectors.superoffice._values import PAGE_SIZE, as_id

__all__ = ["ArchivePaginator", "ContactPages", "PersonPages", "UserPages"]


class ArchivePaginator:
    """The pages of one archive read: ``odata.nextLink`` when the server sends one, else ``$skip``."""

    #: The archive's list endpoint, relative to the Web API base.
    path: ClassVar[str]

    def __init__(self, params: dict[str, Any], *, origin: str, at_most: int | None = None) -> None:
        self._params = {**params, "$top": PAGE_SIZE, "$skip": 0}
        origin_parts = urlsplit(origin)
        self._origin = (origin_parts.scheme, origin_parts.netloc)
        self._at_most = at_most
        self._page_size = 0  # the largest page seen: a server may cap $top silently, so a short page ends it
        self._linked = False  # once the server has sent a next link, its absence means the last page
        #: Rows received so far.
        self.seen = 0
        #: The next request: a path relative to the Web API base (with :attr:`query`), or an absolute next link.
        self.url: str = self.path
        self.query: dict[str, Any] | None = self._params
        self.has_next_page = True

    def rows(self, body: dict[str, Any], url: httpx.URL) -> list[dict[str, Any]]:
        """The ``value`` list of a page (checked by :meth:`check`); :class:`PayloadError` when there is none."""
        rows = body.get("value")
        if not isinstance(rows, list):
            raise PayloadError("an archive page has no 'value' list", method="GET", url=url)
        self.check(rows, url)
        return rows

    def check(self, rows: list[Any], url: httpx.URL) -> None:
        """Refuse rows this archive's readers cannot use (nothing to check by default)."""

    def update_state(self, body: dict[str, Any], rows: list[Any], url: httpx.URL) -> None:
        """Move to the page after the one just read (``body``, its ``rows``), or end the paging."""
        self.seen += len(rows)
        self._page_size = max(self._page_size, len(rows))
        next_link = body.get("odata.nextLink")
        if next_link:
            nxt = urlsplit(str(next_link))
            if (nxt.scheme, nxt.netloc) != self._origin:
                raise PayloadError(
                    "odata.nextLink points to another origin; refusing to follow it", method="GET", url=url
                )
            self.url, self.query, self._linked = str(next_link), None, True
        elif (
            self._linked
            or not rows
            or len(rows) < self._page_size
            or (self._at_most is not None and self.seen >= self._at_most)
        ):
            self.has_next_page = False
        else:
            self._params["$skip"] = self.seen
            self.url, self.query = self.path, self._params


class UserPages(ArchivePaginator):
    """``GET api/v1/User`` (the AllUsers archive); every row must carry a usable ``associateDbId``."""

    path = "api/v1/User"

    def check(self, rows: list[Any], url: httpx.URL) -> None:
        """A row without a usable ``associateDbId`` is a :class:`PayloadError` naming the row."""
        for n, r in enumerate(rows):
            if not isinstance(r, dict) or as_id(r.get("associateDbId")) is None:
                bad = str(r.get("associateDbId") if isinstance(r, dict) else r)[:40]
                raise PayloadError(
                    f"user row {self.seen + n} has no usable associateDbId ({bad!r})", method="GET", url=url
                )


class PersonPages(ArchivePaginator):
    """``GET api/v1/Person`` (the person archive: mobile phones, persons left by an interrupted create)."""

    path = "api/v1/Person"


class ContactPages(ArchivePaginator):
    """``GET api/v1/Contact`` (the company archive: the owner companies list)."""

    path = "api/v1/Contact"
