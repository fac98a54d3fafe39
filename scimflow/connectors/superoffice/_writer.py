"""The SuperOffice Web API writer: :class:`~scimflow.apply.Writer` over :class:`SuperOfficeTarget`.

Everything the apply engine must not know about SuperOffice is here: the reference lists (read once per
writer), the order of a row's writes (update then retire; reactivate then update), the bulk look-ups
before creates (user names in one ``oneOf`` read, the taken short names), and how SuperOffice's values
compare with the plan's (``active`` is the inverse of ``retired``, e-mail and user name case-insensitive,
an empty group list equal to none).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scimflow.connectors.errors import PayloadError
from scimflow.connectors.superoffice._creates import CREATE_REQUESTS
from scimflow.connectors.superoffice._target import SuperOfficeTarget
from scimflow.connectors.superoffice._updates import MAKE_RETIRED, update_requests
from scimflow.connectors.superoffice._values import ID_CHUNK, NAME_PREFIX_READS, PAGE_SIZE, USER_NAME_CHUNK, initials
from scimflow.vocab import same_value

if TYPE_CHECKING:
    from scimflow.apply import PlanRow, TargetView
    from scimflow.config import SuperOfficeConfig
    from scimflow.frames import Reference

__all__ = ["SuperOfficeWriter"]


def _current_value(current: Mapping[str, Any], field: str) -> Any:
    if field == "active":
        retired = current.get("retired")
        return None if retired is None else not retired
    return current.get(field)


def _blank_str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _pages(rows: int) -> int:
    """Requests of an archive read of ``rows`` rows without a bound (``_pages.ArchivePaginator``: a short or
    empty page ends it, so a first page shorter than :data:`PAGE_SIZE` is followed by an empty one)."""
    if rows == 0:
        return 1
    return 2 if rows < PAGE_SIZE else rows // PAGE_SIZE + 1


def _bulk(n: int) -> int:
    """Requests of a bounded ``oneOf`` read of ``n`` ids that are all there (one page per chunk)."""
    return -(-n // ID_CHUNK)


@dataclass(frozen=True)
class _Chunk:
    """What :meth:`SuperOfficeWriter.prepare` read for a chunk's creates."""

    #: ``{casefolded user name: users holding it}`` for the creates' names (``None``: not read).
    users: dict[str, list[dict[str, Any]]] | None = None
    #: Keys of the creates the journal has seen before (they may have left a person behind).
    retried: frozenset[str] = field(default_factory=frozenset)


class _NameReads:
    """The reads of taken ``Name`` values that :meth:`SuperOfficeTarget.prepare_names` makes (``_names.NameBook``)."""

    def __init__(self, seen: TargetView) -> None:
        self.users = seen.users
        self.taken = seen.names
        self.loaded: set[str] = set()
        self.all_loaded = False

    def prepare(self, creates: Sequence[PlanRow]) -> int:
        if self.all_loaded:
            return 0
        stems = {
            initials(r.changes.get("first_name", {}).get("to"), r.changes.get("last_name", {}).get("to"))
            for r in creates
        }
        missing = stems - self.loaded
        if len(missing) > NAME_PREFIX_READS:
            self.all_loaded = True
            return _pages(self.users)
        self.loaded |= missing
        return sum(_pages(sum(1 for n in self.taken if n.startswith(stem.casefold()))) for stem in missing)


class SuperOfficeWriter:
    """Writes plan rows to SuperOffice through a :class:`SuperOfficeTarget` (built here, or passed in).

    Example::

        with SuperOfficeWriter(config.superoffice, ca_bundle=config.ca_bundle) as writer:
            scimflow.apply.apply_plan(config, store, out, plan_hash, writer=writer)
    """

    def __init__(
        self,
        config: SuperOfficeConfig,
        *,
        ca_bundle: Path | None = None,
        target: SuperOfficeTarget | None = None,
    ) -> None:
        self._own = target is None
        self.target: SuperOfficeTarget = (
            target if target is not None else SuperOfficeTarget(config, ca_bundle=ca_bundle)
        )
        self._concurrency = config.write_concurrency
        self._ref: Reference | None = None
        self._ref_lock = threading.Lock()

    @property
    def concurrency(self) -> int:
        """``superoffice.write_concurrency``."""
        return self._concurrency

    def reference(self) -> Reference:
        """The tenant's reference lists, read once per writer (the first caller reads, the others wait)."""
        ref = self._ref
        if ref is None:
            with self._ref_lock:
                if self._ref is None:
                    self._ref = self.target.read_reference()
                ref = self._ref
        return ref

    # ------------------------------------------------------------------ reads
    def read_users(self, ids: Sequence[str], *, rows: Sequence[PlanRow] = ()) -> dict[str, Mapping[str, Any]]:
        """``SO_SCHEMA`` records of these users (one bulk ``associateDbId oneOf`` read), by associate id."""
        self.reference()
        frame = self.target.read_users_by_id([int(i) for i in ids])
        return {str(r["associate_id"]): r for r in frame.iter_rows(named=True) if r.get("associate_id") is not None}

    def differences(self, current: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
        """Fields of ``values`` whose value in the ``SO_SCHEMA`` record ``current`` differs."""
        return [f for f, v in values.items() if not same_value(f, _current_value(current, f), v)]

    def prepare(self, rows: Sequence[PlanRow], *, retried: AbstractSet[str]) -> _Chunk:
        """Read the creates' user names (one ``oneOf`` read) and their initials' taken short names, side by side."""
        creates = [r for r in rows if r.action == "create"]
        if not creates:
            return _Chunk()
        self.reference()
        names = [str(n) for r in creates if (n := r.changes.get("user_name", {}).get("to"))]
        people = [
            (r.changes.get("first_name", {}).get("to"), r.changes.get("last_name", {}).get("to")) for r in creates
        ]
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="scimflow-prepare") as pool:
            found = pool.submit(self.target.find_by_user_names, names) if names else None
            prepared = pool.submit(self.target.prepare_names, people)
            users = found.result() if found is not None else {}
            prepared.result()
        return _Chunk(users, frozenset(retried))

    # ------------------------------------------------------------------ writes
    def write(self, row: PlanRow, current: Mapping[str, Any] | None, chunk: Any) -> str | None:
        """Send one row: a create (person, then user), or the update, retire and reactivate it holds."""
        ref = self.reference()
        if row.action == "create":
            fields = {k: v for k, v in row.to_values().items() if v is not None and k != "active"}
            if isinstance(chunk, _Chunk):
                name = _blank_str(fields.get("user_name"))
                existing = chunk.users.get(name.casefold(), []) if chunk.users is not None and name else None
                new_id = self.target.create_user(fields, ref, retry=row.key in chunk.retried, existing=existing)
            else:
                new_id = self.target.create_user(fields, ref)
            return str(int(new_id))
        if row.partner_id is None:
            raise PayloadError("no associate_id in the plan row")
        aid = int(row.partner_id)
        record = dict(current) if current is not None else None
        other = {k: v for k, v in row.changes.items() if k != "active"}
        active = row.changes.get("active")
        if active is not None and active.get("to") is False:
            if other:
                self.target.update_user(aid, other, ref, current=record)
            self.target.retire(aid)
        elif active is not None and active.get("to") is True:
            self.target.reactivate(aid)
            if other:  # reactivation changed the user after the re-read: read it again
                self.target.update_user(aid, other, ref)
        elif other:
            self.target.update_user(aid, other, ref, current=record)
        return str(aid)

    def finish_chunk(self, chunk: Any) -> dict[tuple[str, str], str]:
        """Nothing is deferred: every write was sent by :meth:`write`."""
        return {}

    # ------------------------------------------------------------------ the cost of a plan
    def requests_for(self, rows: Sequence[PlanRow], seen: TargetView) -> Counter[str]:
        """What an apply of ``rows`` sends (no drift, no ``DuplicateName``): the login and the reference lists
        (:meth:`reference`), then per chunk the re-read (users, then their people's mobiles), the creates'
        look-ups (:meth:`prepare`), the writes (:meth:`write`) and the read-back."""
        from scimflow.apply import chunk_rows

        out: Counter[str] = Counter()
        if not rows:
            return out
        out.update(["POST login/api/PartnerSystemUser/Authenticate", "GET login/.well-known/jwks"])
        out.update(["GET api/v1/MDOList/{list}"] * 2 + ["GET api/v1/User/Default"])
        out["GET api/v1/Contact"] += _pages(seen.companies)
        names = _NameReads(seen)
        empty_known: set[str] = set()
        for chunk in chunk_rows(rows):
            ids = {r.partner_id for r in chunk if r.action != "create" and r.partner_id is not None}
            if ids:
                out["GET api/v1/User"] += _bulk(len(ids))
                out["GET api/v1/Person"] += _bulk(len(ids))
            creates = [r for r in chunk if r.action == "create"]
            if creates:
                user_names = {str(n).strip() for r in creates if (n := r.changes.get("user_name", {}).get("to"))}
                out["GET api/v1/User"] += -(-len({n for n in user_names if n}) // USER_NAME_CHUNK)
                out["GET api/v1/User"] += names.prepare(creates)
            for row in chunk:
                out.update(self._row_requests(row, empty_known))
            out["GET api/v1/User"] += _bulk(len(chunk))
            out["GET api/v1/Person"] += _bulk(len(chunk))
        return out

    @staticmethod
    def _row_requests(row: PlanRow, empty_known: set[str]) -> list[str]:
        """The requests :meth:`write` sends for ``row`` (the same branches)."""
        if row.action == "create":
            return list(CREATE_REQUESTS)
        other = {k: v for k, v in row.changes.items() if k != "active"}
        active = row.changes.get("active")
        if active is not None and active.get("to") is False:
            return [*update_requests(other, fast=True, empty_known=empty_known), MAKE_RETIRED]
        if active is not None and active.get("to") is True:
            return [MAKE_RETIRED, *update_requests(other, fast=False, empty_known=empty_known)]
        return update_requests(other, fast=True, empty_known=empty_known)

    def close(self) -> None:
        """Close the target (when this writer built it)."""
        if self._own:
            self.target.close()

    def __enter__(self) -> SuperOfficeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
