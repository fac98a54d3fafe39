"""The writer seam: what the apply engine needs from a target, and nothing more.

The engine (:mod:`scimflow.apply._engine`) depends on this protocol alone; a target's knowledge (its order
of writes, reference lists, short names, field comparison, request shapes) lives in its writer:
``SuperOfficeWriter`` (the Web API connector) for the SuperOffice Web API, the SCIM writer for
``target: scim``. :func:`scimflow.writers.new_writer` builds the one the config names.

How the engine drives a writer, per chunk of plan rows (chunks overlap: several chunks' calls may run at
once on different threads, so every method must be thread-safe):

1. ``prepare(rows, retried=...)`` and ``read_users(ids)`` run side by side. ``rows`` are the chunk's rows
   that may be written (not journalled as applied already); ``ids`` the partner ids of its non-create rows.
2. For each non-create row, the engine compares ``read_users``' record with the row's ``from`` and ``to``
   values through ``differences``: the user gone → ``drifted``; no difference from ``to`` →
   ``already_done``; no difference from ``from`` → written; otherwise → ``drifted`` (the fields named).
3. ``write(row, current, chunk)`` for each row to write, from up to ``concurrency`` threads at once (rows
   of older chunks first). A create gets ``current=None``.
4. ``finish_chunk(chunk)`` once the chunk's writes are done (its rows' results are known).
5. ``read_users`` again for the users written, and ``differences`` against ``to``: the read-back
   (``verified``).

``close()`` once, after the last chunk. ``requests_for(rows, seen)`` is asked before an apply, not during one:
the requests the writer would send for these rows (:mod:`scimflow.plan._cost`, the cost of a plan). Partner ids are strings here whatever the target's own type (a
SuperOffice AssociateId arrives as ``"123"``; the writer converts).

Errors: from ``write``, :class:`~scimflow.connectors.errors.ConflictError` makes the row ``drifted`` and
any other :class:`~scimflow.connectors.errors.ConnectorError` makes it ``failed``; the other methods' errors,
and any other exception anywhere, end the apply (the journal still says ``pending`` for the rows in flight;
a rerun of the plan re-checks them). So a writer must be **idempotent per row**: a create finds the user an
interrupted earlier attempt made (``retried`` names the rows the journal has seen before) instead of making
a second one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from scimflow.apply._rows import PlanRow

__all__ = ["RowKey", "TargetView", "Writer"]

#: ``(key, action)``: one plan row (a plan has at most one row per key and action).
RowKey = tuple[str, str]


@dataclass(frozen=True)
class TargetView:
    """What the plan's extract saw of the target, for :meth:`Writer.requests_for`."""

    #: Users in the target (every type), e.g. the pages of a read of every user name.
    users: int = 0
    #: Their short names, casefolded (SuperOffice's ``Name``, the User ID new users' names are checked against).
    names: frozenset[str] = frozenset()
    #: Rows of the target's company list (SuperOffice's ``Contact`` archive, read with the reference lists).
    companies: int = 0
    #: Groups that exist already (a SCIM target's computed groups), not created by the apply.
    groups: frozenset[str] = frozenset()


@runtime_checkable
class Writer(Protocol):
    """A target the apply engine writes plan rows to (see the module docstring for the call order)."""

    @property
    def concurrency(self) -> int:
        """How many rows may be written at once across all chunks (the writer's own setting, e.g.
        ``superoffice.write_concurrency`` or ``scim.write_concurrency``); the engine runs this many writer
        threads."""
        ...

    def read_users(self, ids: Sequence[str], *, rows: Sequence[PlanRow] = ()) -> dict[str, Mapping[str, Any]]:
        """The current state of these users, read in bulk: ``{partner id: record}``.

        An id missing from the answer is a user that is gone. A record is whatever :meth:`differences` and
        :meth:`write` understand (e.g. the user's values under the plan's field names). Used for the drift
        re-read before a chunk's writes (``rows``: the plan rows behind ``ids``, for a writer that finds a
        user whose cached id is gone by other keys) and for the read-back after them.
        """
        ...

    def differences(self, current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
        """The fields of ``values`` (``{plan field: plan value}``, a row's ``from`` or ``to``) whose value in
        ``current`` (a record of :meth:`read_users`) differs, in ``values``' order; ``[]``: all match.

        The target's field knowledge lives here (how a field is stored, which fields compare case-insensitively,
        an empty list equal to none, ``active`` from a retired flag, ...).
        """
        ...

    def prepare(self, rows: Sequence[PlanRow], *, retried: AbstractSet[str]) -> Any:
        """Bulk work before a chunk's writes; returns the chunk's context, passed to :meth:`write` and
        :meth:`finish_chunk` (opaque to the engine; ``None`` is fine).

        ``rows`` are the chunk's rows that may be written (creates included; rows found drifted or already
        done by the re-read are among them, as the re-read runs at the same time). ``retried`` holds the
        keys of create rows the journal has seen before (under any plan): only those may have been
        interrupted after writing something, so only those need to look for what an earlier attempt left.
        E.g. SuperOffice reads the creates' user names in one request and the taken short names.
        """
        ...

    def write(self, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> str | None:
        """Apply one row (``create``, ``update``, ``retire`` or ``reactivate``) and return its partner id (for
        a create, the new user's id; otherwise the row's own, which may be returned as is).

        ``current`` is the user's record from the chunk's re-read (it matched the row's ``from`` values), so
        an update can be written from it without reading the user again; ``None`` for a create. ``chunk``
        is what :meth:`prepare` returned for this row's chunk. Raise
        :class:`~scimflow.connectors.errors.ConflictError` when the target refuses the write because the
        user changed meanwhile, another :class:`~scimflow.connectors.errors.ConnectorError` when it fails.
        Called from :attr:`concurrency` threads at once.
        """
        ...

    def finish_chunk(self, chunk: Any) -> Mapping[RowKey, str]:
        """Deferred work once a chunk's rows are written (e.g. group memberships sent in batches); returns
        ``{(key, action): detail}`` for rows whose deferred part failed (they become ``failed``); ``{}``
        when there is nothing to do."""
        ...

    def close(self) -> None:
        """Release the connections (after the last chunk and the read-back)."""
        ...

    def requests_for(self, rows: Sequence[PlanRow], seen: TargetView) -> Counter[str]:
        """The requests an apply of ``rows`` (change rows, none held) would send, per endpoint
        (``"PATCH api/v1/User/{id}"``): re-reads, look-ups, writes and read-backs, chunked as the engine
        chunks (:func:`scimflow.apply.chunk_rows`), each target's rows at their planned ``from`` values.
        Sends nothing; written next to the code that sends each request, so the two cannot drift."""
        ...
