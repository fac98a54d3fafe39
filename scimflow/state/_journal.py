"""The journal part of the state store: every plan row's status, so a rerun sees what is already done."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from scimflow.state import _tables as t
from scimflow.state._base import StateError, StoreBase, aware, chunks, partner_id, utc_now

__all__ = ["JournalPart", "JournalStatus"]

JournalStatus = Literal["pending", "applied", "drifted", "failed", "held", "verified", "rejected"]


class JournalPart(StoreBase):
    """The apply journal: begin a plan's rows, mark them (from many threads), read them back."""

    def journal_begin(
        self, plan_hash: str, rows: Iterable[Mapping[str, Any]] | pl.DataFrame, *, run_id: str | None = None
    ) -> int:
        """Record the plan's rows as ``pending``, keeping rows this plan already has; return how many were new.

        ``rows`` have ``key`` and ``action`` and optionally ``entra_id`` and ``associate_id`` (a plan's rows
        frame works as is). A rerun of the same plan therefore sees what is already done.
        """
        items = rows.iter_rows(named=True) if isinstance(rows, pl.DataFrame) else rows
        now = utc_now()
        records = [
            {
                "run_id": run_id,
                "plan_hash": plan_hash,
                "key": r["key"],
                "entra_id": r.get("entra_id"),
                "associate_id": partner_id(r.get("associate_id")),
                "action": r["action"],
                "status": "pending",
                "detail": None,
                "at": now,
            }
            for r in items
        ]
        if not records:
            return 0
        inserted = 0
        with self._tx() as conn:
            before = self._journal_count(conn, plan_hash)
            for chunk in chunks(records, 5000):
                stmt = self._insert(t.journal).on_conflict_do_nothing(index_elements=["plan_hash", "key", "action"])
                conn.execute(stmt, list(chunk))
            inserted = self._journal_count(conn, plan_hash) - before
        return inserted

    @staticmethod
    def _journal_count(conn: Connection, plan_hash: str) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(t.journal).where(t.journal.c.plan_hash == plan_hash)
            ).scalar_one()
        )

    def journal_mark(
        self,
        plan_hash: str,
        key: str,
        action: str,
        status: JournalStatus | str,
        detail: str | None = None,
        associate_id: str | int | None = None,
    ) -> None:
        """Set one journal row's status (creating the row if :meth:`journal_begin` did not).

        ``associate_id`` (e.g. of a user just created) is stored when given and kept otherwise.
        Safe to call from many threads at once.
        """
        self.journal_mark_many(plan_hash, [(key, action, status, detail, associate_id)])

    def journal_mark_many(
        self,
        plan_hash: str,
        marks: Iterable[tuple[str, str, str, str | None, str | int | None]],
    ) -> int:
        """Set many rows' statuses in one transaction: ``(key, action, status, detail, associate_id)`` each."""
        now = utc_now()
        records = []
        for key, action, status, detail, associate_id in marks:
            if status not in t.JOURNAL_STATUSES:
                msg = f"journal: status {status!r} is not one of {', '.join(t.JOURNAL_STATUSES)}"
                raise StateError(msg)
            records.append(
                {
                    "plan_hash": plan_hash,
                    "key": key,
                    "action": action,
                    "status": status,
                    "detail": detail,
                    "associate_id": partner_id(associate_id),
                    "at": now,
                }
            )
        if not records:
            return 0
        j = t.journal
        with self._tx() as conn:
            for chunk in chunks(records, 5000):
                stmt = self._insert(j)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["plan_hash", "key", "action"],
                    set_={
                        "status": stmt.excluded.status,
                        "detail": stmt.excluded.detail,
                        "at": stmt.excluded.at,
                        "associate_id": sa.func.coalesce(stmt.excluded.associate_id, j.c.associate_id),
                    },
                )
                conn.execute(stmt, list(chunk))
        return len(records)

    def journal_status(self, plan_hash: str) -> dict[tuple[str, str], str]:
        """``{(key, action): status}`` of every journal row of a plan."""
        j = t.journal
        with self._tx() as conn:
            rows = conn.execute(sa.select(j.c.key, j.c.action, j.c.status).where(j.c.plan_hash == plan_hash)).all()
        return {(k, a): s for k, a, s in rows}

    def journal_seen(
        self, action: str, keys: Sequence[str], entra_ids: Sequence[str] = ()
    ) -> set[tuple[str, str | None]]:
        """``(key, entra_id)`` of journal rows of ``action`` under ANY plan that name one of ``keys`` or ``entra_ids``.

        A rerun after a crash plans again (a new plan hash); this tells it which changes an earlier run
        had started.
        """
        j = t.journal
        keys, ids = list(keys), list(entra_ids)
        seen: set[tuple[str, str | None]] = set()
        with self._tx() as conn:
            for i in range(0, max(len(keys), len(ids)), 500):
                cond: list[sa.ColumnElement[bool]] = []
                if keys[i : i + 500]:
                    cond.append(j.c.key.in_(keys[i : i + 500]))
                if ids[i : i + 500]:
                    cond.append(j.c.entra_id.in_(ids[i : i + 500]))
                if not cond:
                    continue
                stmt = sa.select(j.c.key, j.c.entra_id).where(j.c.action == action, sa.or_(*cond))
                seen.update((k, e) for k, e in conn.execute(stmt))
        return seen

    def journal(self, plan_hash: str) -> pl.DataFrame:
        """A plan's journal rows as a frame (key, action, entra_id, associate_id, status, detail, at, run_id);
        ``associate_id`` is the partner id as stored (String)."""
        j = t.journal
        cols = [j.c.key, j.c.action, j.c.entra_id, j.c.associate_id, j.c.status, j.c.detail, j.c.at, j.c.run_id]
        with self._tx() as conn:
            rows = conn.execute(sa.select(*cols).where(j.c.plan_hash == plan_hash).order_by(j.c.key, j.c.action)).all()
        schema: dict[str, Any] = {
            "key": pl.String,
            "action": pl.String,
            "entra_id": pl.String,
            "associate_id": pl.String,
            "status": pl.String,
            "detail": pl.String,
            "at": pl.Datetime("us", "UTC"),
            "run_id": pl.String,
        }
        data = [(*r[:6], aware(r[6]), r[7]) for r in rows]
        return pl.DataFrame(data, schema=schema, orient="row")
