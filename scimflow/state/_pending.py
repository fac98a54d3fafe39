"""The pending-retirement part of the state store: users whose deprovisioning waits out a grace period.

One row per partner user (its id as a string: a SuperOffice AssociateId or a SCIM ``id``): the plan key and
Entra id it was planned under, when it was first seen due for deprovisioning, when it falls due, and why.
The planner (:mod:`scimflow.plan._grace`) reads them, and records its plan's set with :meth:`save_pending`
when the plan is saved; the apply stage drops an entry once its retirement is applied (:meth:`drop_pending`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import polars as pl
import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StateError, StoreBase, aware, chunks, partner_id, utc_now

__all__ = ["PENDING_COLUMNS", "PendingPart"]

_UTC = pl.Datetime("us", "UTC")
#: The frame :meth:`PendingPart.pending_retirements` gives (the planner's ``PENDING_SCHEMA``).
PENDING_COLUMNS: dict[str, Any] = {
    "partner_id": pl.String,
    "key": pl.String,
    "entra_id": pl.String,
    "first_seen": _UTC,
    "due": _UTC,
    "reason": pl.String,
}


class PendingPart(StoreBase):
    """Pending retirements: read them, replace them with a plan's set, drop applied ones."""

    def pending_retirements(self) -> pl.DataFrame:
        """Every pending retirement, soonest due first (columns :data:`PENDING_COLUMNS`)."""
        p = t.pending_retirements
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(p.c.partner_id, p.c.key, p.c.entra_id, p.c.first_seen, p.c.due, p.c.reason).order_by(
                    p.c.due, p.c.key
                )
            ).all()
        data = [(r[0], r[1], r[2], aware(r[3]), aware(r[4]), r[5]) for r in rows]
        return pl.DataFrame(data, schema=PENDING_COLUMNS, orient="row")

    def save_pending(self, entries: pl.DataFrame) -> int:
        """Make the stored set exactly ``entries`` (columns :data:`PENDING_COLUMNS`) in one transaction: new
        ones are added, kept ones updated (``first_seen`` as given), the others (cancelled) deleted; return
        how many are kept.

        Raises:
            StateError: an entry has no partner id, key or time, or a partner id appears twice.
        """
        missing = [c for c in PENDING_COLUMNS if c not in entries.columns]
        if missing:
            msg = f"pending retirements: columns missing: {', '.join(missing)}"
            raise StateError(msg)
        now = utc_now()
        values: dict[str, dict[str, Any]] = {}
        for pid, key, entra_id, first_seen, due, reason in entries.select(list(PENDING_COLUMNS)).iter_rows():
            clean = partner_id(pid)
            if clean is None or not key or first_seen is None or due is None:
                msg = f"pending retirements: entry {key!r} needs a partner id, a key, first_seen and due"
                raise StateError(msg)
            if clean in values:
                msg = f"pending retirements: partner {clean} given twice"
                raise StateError(msg)
            values[clean] = {
                "partner_id": clean,
                "key": str(key),
                "entra_id": entra_id,
                "first_seen": _as_utc(first_seen),
                "due": _as_utc(due),
                "reason": reason,
                "updated_at": now,
            }
        p = t.pending_retirements
        with self._tx() as conn:
            stored = {row[0] for row in conn.execute(sa.select(p.c.partner_id))}
            gone = sorted(stored - set(values))
            for chunk in chunks(gone):
                conn.execute(sa.delete(p).where(p.c.partner_id.in_(chunk)))
            if values:
                ins = self._insert(p)
                ins = ins.on_conflict_do_update(
                    index_elements=["partner_id"],
                    set_={c: ins.excluded[c] for c in ("key", "entra_id", "first_seen", "due", "reason", "updated_at")},
                )
                conn.execute(ins, list(values.values()))
        return len(values)

    def drop_pending(self, partner_ids: Iterable[str | int]) -> int:
        """Drop the entries of these partners (their retirement was applied); return how many were dropped."""
        ids = sorted({clean for pid in partner_ids if (clean := partner_id(pid)) is not None})
        if not ids:
            return 0
        p = t.pending_retirements
        dropped = 0
        with self._tx() as conn:
            for chunk in chunks(ids):
                dropped += conn.execute(sa.delete(p).where(p.c.partner_id.in_(chunk))).rowcount or 0
        return dropped


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
