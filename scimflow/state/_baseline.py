"""The Entra baseline part of the state store: a tenant's last full frame (Parquet) and its delta links."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StoreBase, aware, utc_now

__all__ = ["Baseline", "BaselinePart"]


@dataclass(frozen=True)
class Baseline:
    """The last full Entra frame of a tenant and the Graph delta links to continue from."""

    tenant: str
    frame: pl.DataFrame
    users_link: str | None
    groups_link: str | None
    user_count: int
    updated_at: dt.datetime


class BaselinePart(StoreBase):
    """The Entra baseline: load, save (replace) and clear a tenant's."""

    def load_baseline(self, tenant: str) -> Baseline | None:
        """The stored Entra frame and delta links of ``tenant``, or ``None`` before the first full read."""
        b = t.baseline
        with self._tx() as conn:
            row = conn.execute(sa.select(b).where(b.c.tenant == tenant)).mappings().one_or_none()
        if row is None:
            return None
        frame = pl.read_parquet(io.BytesIO(row["frame"]))
        updated = aware(row["updated_at"])
        assert updated is not None
        return Baseline(
            tenant=tenant,
            frame=frame,
            users_link=row["users_link"],
            groups_link=row["groups_link"],
            user_count=int(row["user_count"]),
            updated_at=updated,
        )

    def save_baseline(self, tenant: str, frame: pl.DataFrame, users_link: str | None, groups_link: str | None) -> None:
        """Replace ``tenant``'s baseline: the whole Entra frame (stored as Parquet) and the new delta links."""
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd")
        values = {
            "tenant": tenant,
            "frame": buf.getvalue(),
            "users_link": users_link,
            "groups_link": groups_link,
            "user_count": frame.height,
            "updated_at": utc_now(),
        }
        with self._tx() as conn:
            stmt = self._insert(t.baseline)
            stmt = stmt.on_conflict_do_update(
                index_elements=["tenant"], set_={k: stmt.excluded[k] for k in values if k != "tenant"}
            )
            conn.execute(stmt, values)

    def clear_baseline(self, tenant: str) -> None:
        """Forget ``tenant``'s baseline (the next read is a full one)."""
        with self._tx() as conn:
            conn.execute(sa.delete(t.baseline).where(t.baseline.c.tenant == tenant))
