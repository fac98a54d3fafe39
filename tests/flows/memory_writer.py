"""A test-only :class:`scimflow.apply.Writer`: users in a dict, no HTTP, nothing SuperOffice about it.

It drives the apply engine through the writer protocol alone (tests/flows/test_memory_writer.py). Partner
ids are strings (``"m1"``, ``"m2"``, ...), records are the plan's field names with ``active`` a flag, and
creates are idempotent on ``user_name`` as the protocol asks. ``crash_on`` makes :meth:`write` raise an
exception of the caller's choice (before or after the user is stored) to act out a crash mid-chunk.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from scimflow.apply import PlanRow, RowKey
from scimflow.connectors.errors import ConflictError, UpstreamError
from scimflow.vocab import same_value

__all__ = ["MemoryWriter"]


class MemoryWriter:
    """An in-memory target implementing :class:`scimflow.apply.Writer`."""

    def __init__(
        self,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        concurrency: int = 2,
        crash_on: str | None = None,
        crash: BaseException | None = None,
        crash_after_write: bool = False,
        refuse: AbstractSet[str] = frozenset(),
        conflict: AbstractSet[str] = frozenset(),
        deferred_failures: Mapping[RowKey, str] | None = None,
    ) -> None:
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self._concurrency = concurrency
        self._ids = itertools.count(len(self.users) + 1)
        self._lock = threading.Lock()
        self._crash_on = crash_on
        self._crash = crash
        self._crash_after_write = crash_after_write
        self._refuse = set(refuse)
        self._conflict = set(conflict)
        self._deferred_failures = dict(deferred_failures or {})
        #: What the engine asked for, to check the call order in tests.
        self.calls: list[tuple[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def read_users(self, ids: Sequence[str], *, rows: Sequence[PlanRow] = ()) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            self.calls.append(("read_users", sorted(ids)))
            return {i: dict(self.users[i]) for i in ids if i in self.users}

    def differences(self, current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
        return [f for f, v in values.items() if not same_value(f, current.get(f), v)]

    def prepare(self, rows: Sequence[PlanRow], *, retried: AbstractSet[str]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("prepare", (sorted(r.key for r in rows), sorted(retried))))
        return {"retried": set(retried)}

    def write(self, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> str | None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if row.key == self._crash_on and self._crash is not None and not self._crash_after_write:
                raise self._crash
            if row.key in self._refuse:
                raise UpstreamError(f"refused {row.key}")
            if row.key in self._conflict:
                raise ConflictError(f"{row.key} changed meanwhile")
            new_id = self._write(row, current)
            if row.key == self._crash_on and self._crash is not None:
                raise self._crash
            return new_id
        finally:
            with self._lock:
                self.in_flight -= 1

    def _write(self, row: PlanRow, current: Mapping[str, Any] | None) -> str:
        values = row.to_values()
        with self._lock:
            if row.action == "create":
                name = str(values.get("user_name") or "")
                for uid, user in self.users.items():  # idempotent on user_name
                    if same_value("user_name", user.get("user_name"), name):
                        user.update(values)
                        return uid
                uid = f"m{next(self._ids)}"
                self.users[uid] = {"active": True, **values}
                return uid
            uid = row.partner_id
            assert uid is not None and uid in self.users
            assert current is not None  # the engine passes the re-read record of an update
            self.users[uid].update(values)
            return uid

    def finish_chunk(self, chunk: Any) -> dict[RowKey, str]:
        with self._lock:
            self.calls.append(("finish_chunk", None))
        return dict(self._deferred_failures)

    def close(self) -> None:
        self.closed = True

    def requests_for(self, rows: Sequence[PlanRow], seen: object = None) -> Counter[str]:
        """One call per row (the writer protocol's cost; no HTTP here)."""
        return Counter(f"write {r.action}" for r in rows)

    def names(self) -> list[str]:
        """Every user's ``user_name``, sorted (duplicates kept)."""
        return sorted(str(u.get("user_name")) for u in self.users.values())
