"""Read-only questions an operator asks the state store: the journal with its approvals, the baseline, runs.

These complement :class:`~scimflow.state.StateStore` (which the pipeline writes through) without adding
to it: each function takes an open store and reads with SQLAlchemy Core. Nothing here returns a delta
link's value: links hold Graph's ``$deltatoken``, so :func:`baseline_info` reports their presence, length
and a short digest only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._store import StateStore

__all__ = [
    "BaselineInfo",
    "JournalEntry",
    "LinkInfo",
    "StoreOverview",
    "baseline_info",
    "journal_entries",
    "store_overview",
]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _partner_id(value: object) -> int | str | None:
    """A stored partner id as shown: an integer when it is one (SuperOffice), else the string (SCIM)."""
    if value is None:
        return None
    text = str(value)
    return int(text) if text.isdecimal() else text


@dataclass(frozen=True)
class JournalEntry:
    """One journal row with the run it belongs to and the plan's newest approval (if any)."""

    at: dt.datetime
    plan_hash: str
    run_id: str | None
    key: str
    entra_id: str | None
    #: The partner id: an integer for a SuperOffice AssociateId (as the store held before ids became
    #: strings), else the stored string (a SCIM ``id``).
    associate_id: int | str | None
    action: str
    status: str
    detail: str | None
    approver: str | None
    approved: bool | None
    approval_comment: str | None
    approved_at: dt.datetime | None
    run_mode: str | None
    run_status: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (timestamps as ISO 8601)."""
        out = dict(self.__dict__)
        for k in ("at", "approved_at"):
            v = out[k]
            out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
        return out


def _like_prefix(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def journal_entries(
    store: StateStore,
    *,
    user: str | None = None,
    run: str | None = None,
    plan: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> list[JournalEntry]:
    """Journal rows, oldest first, filtered by user (key/UPN or Entra id, any case), run id or plan hash
    (prefixes allowed), and time; each with the plan's newest approval and its run's mode and status.
    """
    j, r, a = t.journal, t.runs, t.approvals
    cond: list[sa.ColumnElement[bool]] = []
    if user:
        cond.append(sa.or_(sa.func.lower(j.c.key) == user.strip().lower(), j.c.entra_id == user.strip()))
    if plan:
        cond.append(j.c.plan_hash.like(_like_prefix(plan.strip().lower()), escape="\\"))
    if run:
        pattern = _like_prefix(run.strip())
        run_plans = sa.select(r.c.plan_hash).where(r.c.id.like(pattern, escape="\\"), r.c.plan_hash.is_not(None))
        cond.append(sa.or_(j.c.run_id.like(pattern, escape="\\"), j.c.plan_hash.in_(run_plans)))
    if since is not None:
        cond.append(j.c.at >= since)
    stmt = sa.select(j).where(*cond).order_by(j.c.at, j.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
        hashes = sorted({row["plan_hash"] for row in rows})
        approvals: dict[str, dict[str, Any]] = {}
        plan_runs: dict[str, dict[str, Any]] = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            for one in conn.execute(sa.select(a).where(a.c.plan_hash.in_(chunk)).order_by(a.c.id)).mappings():
                approvals[one["plan_hash"]] = dict(one)  # the newest wins
            for rr in conn.execute(sa.select(r).where(r.c.plan_hash.in_(chunk)).order_by(r.c.started_at)).mappings():
                plan_runs[rr["plan_hash"]] = dict(rr)
        run_ids = sorted({row["run_id"] for row in rows if row["run_id"]})
        runs: dict[str, dict[str, Any]] = {}
        for i in range(0, len(run_ids), 500):
            for one in conn.execute(sa.select(r).where(r.c.id.in_(run_ids[i : i + 500]))).mappings():
                runs[one["id"]] = dict(one)
    out: list[JournalEntry] = []
    for row in rows:
        ap = approvals.get(row["plan_hash"])
        rn = runs.get(row["run_id"] or "") or plan_runs.get(row["plan_hash"])
        at = _aware(row["at"])
        assert at is not None
        out.append(
            JournalEntry(
                at=at,
                plan_hash=row["plan_hash"],
                run_id=row["run_id"] or (rn["id"] if rn else None),
                key=row["key"],
                entra_id=row["entra_id"],
                associate_id=_partner_id(row["associate_id"]),
                action=row["action"],
                status=row["status"],
                detail=row["detail"],
                approver=ap["approver"] if ap else None,
                approved=bool(ap["approve"]) if ap else None,
                approval_comment=(ap["comment"] or None) if ap else None,
                approved_at=_aware(ap["at"]) if ap else None,
                run_mode=rn["mode"] if rn else None,
                run_status=rn["status"] if rn else None,
            )
        )
    return out


@dataclass(frozen=True)
class LinkInfo:
    """A stored delta link, described without its value (it carries a token)."""

    present: bool
    length: int
    digest: str | None  # first 12 hex digits of its SHA-256, to tell two links apart

    @classmethod
    def of(cls, value: str | None) -> LinkInfo:
        if not value:
            return cls(present=False, length=0, digest=None)
        return cls(present=True, length=len(value), digest=hashlib.sha256(value.encode()).hexdigest()[:12])

    def to_dict(self) -> dict[str, Any]:
        return {"present": self.present, "length": self.length, "sha256_prefix": self.digest}


@dataclass(frozen=True)
class BaselineInfo:
    """The stored Entra baseline of one tenant, without the frame and without the links' values."""

    tenant: str
    user_count: int
    updated_at: dt.datetime
    frame_bytes: int
    users_link: LinkInfo
    groups_link: LinkInfo

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "user_count": self.user_count,
            "updated_at": self.updated_at.isoformat(),
            "frame_bytes": self.frame_bytes,
            "users_delta_link": self.users_link.to_dict(),
            "groups_delta_link": self.groups_link.to_dict(),
        }


def baseline_info(store: StateStore, tenant: str) -> BaselineInfo | None:
    """What the baseline of ``tenant`` holds (never the links' values), or ``None`` when there is none."""
    b = t.baseline
    stmt = sa.select(
        b.c.user_count, b.c.updated_at, sa.func.length(b.c.frame).label("frame_bytes"), b.c.users_link, b.c.groups_link
    ).where(b.c.tenant == tenant)
    with store.engine.connect() as conn:
        row = conn.execute(stmt).mappings().one_or_none()
    if row is None:
        return None
    updated = _aware(row["updated_at"])
    assert updated is not None
    return BaselineInfo(
        tenant=tenant,
        user_count=int(row["user_count"]),
        updated_at=updated,
        frame_bytes=int(row["frame_bytes"] or 0),
        users_link=LinkInfo.of(row["users_link"]),
        groups_link=LinkInfo.of(row["groups_link"]),
    )


@dataclass(frozen=True)
class StoreOverview:
    """Counts of the store's tables and its newest run."""

    links: int
    runs: int
    journal_rows: int
    approvals: int
    last_run: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        last = None
        if self.last_run is not None:
            last = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.last_run.items()}
        return {
            "links": self.links,
            "runs": self.runs,
            "journal_rows": self.journal_rows,
            "approvals": self.approvals,
            "last_run": last,
        }


def store_overview(store: StateStore) -> StoreOverview:
    """How many links, runs, journal rows and approvals the store holds, and the newest run."""

    def count(table: sa.Table) -> sa.ScalarSelect[int]:
        return sa.select(sa.func.count()).select_from(table).scalar_subquery()

    r = t.runs
    with store.engine.connect() as conn:
        counts = conn.execute(sa.select(count(t.links), count(r), count(t.journal), count(t.approvals))).one()
        last = (
            conn.execute(
                sa.select(
                    r.c.id, r.c.started_at, r.c.finished_at, r.c.mode, r.c.status, r.c.plan_hash, r.c.source_users
                )
                .order_by(r.c.started_at.desc())
                .limit(1)
            )
            .mappings()
            .one_or_none()
        )
    last_run = None
    if last is not None:
        last_run = dict(last)
        last_run["started_at"] = _aware(last_run["started_at"])
        last_run["finished_at"] = _aware(last_run["finished_at"])
    return StoreOverview(
        links=int(counts[0]),
        runs=int(counts[1]),
        journal_rows=int(counts[2]),
        approvals=int(counts[3]),
        last_run=last_run,
    )
