"""``Name`` (User ID) allocation: initials made unique against the names read as taken and those claimed.

A few new initials are read with ``assocName begins``; more than :data:`NAME_PREFIX_READS` in one batch read
every name once (later creates then claim names locally). A name taken by someone else after the read is
refused by the server (``DuplicateName``) and the create asks for the next one. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from scimflow.connectors.superoffice._api import WebApi
from scimflow.connectors.superoffice._pages import UserPages
from scimflow.connectors.superoffice._values import NAME_PREFIX_READS, initials, quote

__all__ = ["NameBook"]


class NameBook:
    """The ``Name`` values one target has read as taken and claimed for its creates."""

    def __init__(self, api: WebApi) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        #: ``Name`` values (casefolded) read as taken: for the initials in ``_loaded_prefixes``, or all of them.
        self._taken: set[str] = set()
        self._loaded_prefixes: set[str] = set()
        self._all_loaded = False

    def prepare(self, people: Sequence[tuple[Any, Any]]) -> None:
        """Read the taken names for these (first, last) names' initials, once per book."""
        prefixes = {initials(first, last) for first, last in people}
        with self._lock:
            if self._all_loaded:
                return
            missing = sorted(prefixes - self._loaded_prefixes)
        if not missing:
            return
        if len(missing) > NAME_PREFIX_READS:
            params = {"$select": "associateDbId,assocName", "$orderBy": "associateDbId"}
            taken = {str(r.get("assocName") or "").casefold() for r in self._read(params)}
            with self._lock:
                self._taken |= taken
                self._all_loaded = True
            return
        for prefix in missing:
            self._load_prefix(prefix)

    def claim(self, first: Any, last: Any) -> str:
        """Initials (``KN``), else ``KN2``, ``KN3``…: not read as taken and not claimed before.

        Each call claims the name it returns, so a name the server refused (taken meanwhile) is not offered
        again and the next call moves on to the next number.
        """
        stem = initials(first, last)
        with self._lock:
            loaded = self._all_loaded or stem in self._loaded_prefixes
        if not loaded:
            self._load_prefix(stem)
        with self._lock:
            n = 1
            while True:
                candidate = stem if n == 1 else f"{stem}{n}"
                key = candidate.casefold()
                if key not in self._taken and key not in self._claimed:
                    break
                n += 1
            self._claimed.add(key)
        return candidate

    def _load_prefix(self, prefix: str) -> None:
        params = {"$select": "associateDbId,assocName", "$filter": f"assocName begins {quote(prefix)}"}
        taken = {str(r.get("assocName") or "").casefold() for r in self._read(params)}
        with self._lock:
            self._taken |= taken
            self._loaded_prefixes.add(prefix)

    def _read(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._api.rows(UserPages(params, origin=self._api.base))
