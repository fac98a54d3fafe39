"""The state store: links, runs, the apply journal, approvals and the Entra baseline, in one database.

SQLite by default (one owner-only file), PostgreSQL at scale (``postgresql+psycopg://...``). The schema
is Alembic-managed; :class:`StateStore` migrates to the newest revision when it opens.

Concurrency: every method is one short transaction, so a store may be shared by threads (the apply
workers call :meth:`StateStore.journal_mark` from a pool). On SQLite the database runs in WAL mode with a
busy timeout and every transaction starts with ``BEGIN IMMEDIATE``, so concurrent writers (threads or
processes) queue instead of failing with "database is locked".
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from scimflow.errors import ScimflowError
from scimflow.state import _tables as t

__all__ = [
    "HEAD_REVISION",
    "RUN_STATUSES",
    "SUCCESSFUL_RUN_STATUSES",
    "Baseline",
    "JournalStatus",
    "LinkImportError",
    "RunStatus",
    "StateError",
    "StateStore",
]

JournalStatus = Literal["pending", "applied", "drifted", "failed", "held", "verified", "rejected"]
RunStatus = Literal["running", "completed", "partial", "rejected", "failed", "source_unhealthy"]

#: Every status a run may be finished with (``running`` is set by :meth:`StateStore.start_run`).
RUN_STATUSES: tuple[str, ...] = ("running", "completed", "partial", "rejected", "failed", "source_unhealthy")
#: Runs whose source count is a trustworthy base for the ``max_source_drop`` guardrail: the source was
#: judged healthy and the run went to its end (everything applied, or some of it held or drifted).
SUCCESSFUL_RUN_STATUSES: tuple[str, ...] = ("completed", "partial")

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration's revision. Opening a database already there skips importing Alembic (it is slow
#: to import); ``tests/test_state.py`` checks this against the migration scripts.
HEAD_REVISION = "0002"
_BUSY_TIMEOUT_MS = 30_000
_IN_CHUNK = 900  # bound parameters per IN (...) list; SQLite's limit is far above, but keep statements small
_PG_MIGRATION_LOCK = 0x5C1F_0001  # pg_advisory_xact_lock key: one migrator at a time


class StateError(ScimflowError, RuntimeError):
    """The state store cannot be opened or migrated, or a call's arguments are invalid."""


class LinkImportError(StateError):
    """A links import was refused; nothing was written. ``errors`` lists each problem, naming the item."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:20]
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__("links import refused, nothing was written:\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True)
class Baseline:
    """The last full Entra frame of a tenant and the Graph delta links to continue from."""

    tenant: str
    frame: pl.DataFrame
    users_link: str | None
    groups_link: str | None
    user_count: int
    updated_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything the store writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _partner_id(value: object) -> str | None:
    """A partner id as stored: its text (an integer as its decimal digits); ``None`` for none or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _chunks(seq: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _prepare_sqlite_file(database: str) -> None:
    """Create the SQLite file (and any missing folders) owner-only, before SQLite touches it."""
    path = Path(database).expanduser()
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sqlite_engine(url: sa.URL) -> tuple[Engine, bool]:
    database = url.database or ""
    memory = database in ("", ":memory:") or "mode=memory" in str(url.query)
    if memory:
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _prepare_sqlite_file(database)
        engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver (legacy mode skips BEGIN for SELECT and DDL).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not memory:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can
        # fail at once with SQLITE_BUSY when another writer got there first; this one waits instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine, memory


class StateStore:
    """The scimflow state database. Open with a SQLAlchemy URL; it is created and migrated on open.

    Example::

        store = StateStore("sqlite:///.scimflow/state.db")
        store.upsert_links([("6f1c...", 11)])
        store.links()  # polars frame: entra_id (String), associate_id (Int64)

    Args:
        url: ``sqlite:///path/state.db`` (the file and missing folders are created 0600/0700 first),
            ``sqlite://`` (in memory, for tests) or ``postgresql+psycopg://user@host/db``.

    Raises:
        StateError: the database cannot be reached or its schema is newer than this scimflow knows.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as exc:
            msg = f"state_url {url!r} is not a database URL: {exc}"
            raise StateError(msg) from None
        self._url = parsed
        self._lock: AbstractContextManager[Any]
        if parsed.get_backend_name() == "sqlite":
            self._engine, memory = _sqlite_engine(parsed)
            # One shared in-memory connection: serialise its transactions in-process.
            self._lock = _RLockContext() if memory else nullcontext()
        else:
            self._engine = sa.create_engine(parsed, pool_pre_ping=True)
            self._lock = nullcontext()
        self._dialect = self._engine.dialect.name
        try:
            self._migrate()
        except Exception:
            self._engine.dispose()
            raise

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for diagnostics and tests)."""
        return self._engine

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock, self._engine.begin() as conn:
            yield conn

    def _current_revision(self) -> str | None:
        try:
            with self._tx() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        except sa.exc.OperationalError as exc:
            msg = f"state store {self.url}: cannot open it: {exc.orig}"
            raise StateError(msg) from None

    def _migrate(self) -> None:
        if self._current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.util.exc import CommandError

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
        try:
            with self._tx() as conn:
                if self._dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except CommandError as exc:
            msg = f"state store {self.url}: cannot migrate its schema ({exc}); was it written by a newer scimflow?"
            raise StateError(msg) from None
        except sa.exc.OperationalError as exc:
            msg = f"state store {self.url}: cannot open it: {exc.orig}"
            raise StateError(msg) from None

    def _insert(self, table: sa.Table) -> Any:
        """A dialect insert supporting ``on_conflict_*`` (SQLite and PostgreSQL both have it)."""
        if self._dialect == "postgresql":
            return pg_dialect.insert(table)
        if self._dialect == "sqlite":
            return sqlite_dialect.insert(table)
        msg = f"state store: unsupported database {self._dialect!r} (use SQLite or PostgreSQL)"
        raise StateError(msg)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        with self._tx() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()

    # -- links --------------------------------------------------------------------------------------

    def links(self, *, string_ids: bool = False) -> pl.DataFrame:
        """Every stored link as a frame: ``entra_id`` (String), ``associate_id`` (by entra_id).

        Partner ids are stored as strings (a SuperOffice AssociateId and a SCIM ``id`` both fit);
        ``associate_id`` is Int64 (SuperOffice's ids) unless ``string_ids`` (String, e.g. SCIM ids).

        Raises:
            StateError: ``string_ids`` is false and a stored partner id is not an integer.
        """
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(t.links.c.entra_id, t.links.c.associate_id).order_by(t.links.c.entra_id)
            ).all()
        frame = pl.DataFrame(
            {"entra_id": [r[0] for r in rows], "associate_id": [r[1] for r in rows]},
            schema={"entra_id": pl.String, "associate_id": pl.String},
        )
        if string_ids:
            return frame
        try:
            return frame.with_columns(pl.col("associate_id").cast(pl.Int64))
        except pl.exceptions.InvalidOperationError:
            msg = "links: the stored partner ids are not all integers (links of a SCIM target?): read them as strings"
            raise StateError(msg) from None

    def upsert_links(self, pairs: Iterable[tuple[str, str | int]]) -> int:
        """Store ``(entra_id, associate_id)`` pairs; return how many were new or changed.

        A pair replaces any link of either its Entra user or its partner user (a link is one-to-one; the
        newest word wins). Pairs that are already stored are left as they are. Partner ids are stored as
        strings (an integer is stored as its decimal digits).

        Raises:
            StateError: the pairs contradict each other (one id linked to two partners).
        """
        clean = self._clean_pairs(pairs)
        if not clean:
            return 0
        with self._tx() as conn:
            return self._upsert_links(conn, clean)

    @staticmethod
    def _clean_pairs(pairs: Iterable[tuple[str, str | int]]) -> dict[str, str]:
        by_entra: dict[str, str] = {}
        by_assoc: dict[str, str] = {}
        for entra_id, associate_id in pairs:
            eid, aid = str(entra_id).strip(), _partner_id(associate_id)
            if aid is None:
                msg = f"links: Entra user {eid} given an empty partner id"
                raise StateError(msg)
            if by_entra.setdefault(eid, aid) != aid:
                msg = f"links: Entra user {eid} given two partner users ({by_entra[eid]} and {aid})"
                raise StateError(msg)
            if by_assoc.setdefault(aid, eid) != eid:
                msg = f"links: partner user {aid} given two Entra users ({by_assoc[aid]} and {eid})"
                raise StateError(msg)
        return by_entra

    def _upsert_links(self, conn: Connection, pairs: dict[str, str]) -> int:
        lk = t.links
        existing: dict[str, tuple[str, dt.datetime]] = {}
        owner_of: dict[str, str] = {}
        for chunk in _chunks(list(pairs)):
            for eid, aid, created in conn.execute(
                sa.select(lk.c.entra_id, lk.c.associate_id, lk.c.created_at).where(lk.c.entra_id.in_(chunk))
            ):
                existing[eid] = (aid, created)
        for chunk in _chunks(list(pairs.values())):
            for eid, aid in conn.execute(
                sa.select(lk.c.entra_id, lk.c.associate_id).where(lk.c.associate_id.in_(chunk))
            ):
                owner_of[aid] = eid
        changed = {eid: aid for eid, aid in pairs.items() if existing.get(eid, (None,))[0] != aid}
        if not changed:
            return 0
        # Free both sides of every changed pair: its Entra user's old link and its associate's old owner.
        stale_entra = list(changed)
        stale_entra += [owner_of[aid] for aid in changed.values() if aid in owner_of and owner_of[aid] not in changed]
        for chunk in _chunks(stale_entra):
            conn.execute(sa.delete(lk).where(lk.c.entra_id.in_(chunk)))
        now = _now()
        conn.execute(
            sa.insert(lk),
            [
                {
                    "entra_id": eid,
                    "associate_id": aid,
                    "created_at": existing[eid][1] if eid in existing else now,
                    "updated_at": now,
                }
                for eid, aid in changed.items()
            ],
        )
        return len(changed)

    def export_links(self) -> list[dict[str, Any]]:
        """Every link as ``{"entra_id", "associate_id"}``, sorted by entra_id (the ``links export`` format).

        ``associate_id`` is an integer where the stored id is one (SuperOffice), else the string (SCIM).
        """
        return [
            {"entra_id": e, "associate_id": int(a) if a.isdecimal() else a}
            for e, a in self.links(string_ids=True).iter_rows()
        ]

    def import_links(self, items: Any) -> int:
        """Validate and store links in the ``links export`` format, all or nothing; return how many changed.

        Each item must be an object with ``entra_id`` (a non-empty string) and ``associate_id`` (a
        positive integer); other keys are ignored. One Entra user or associate given two partners is an
        error too.

        Raises:
            LinkImportError: any item is invalid; its message names every bad item by index.
        """
        if not isinstance(items, list):
            raise LinkImportError(
                [f"expected a JSON list of {{'entra_id', 'associate_id'}} objects, got {_kind(items)}"]
            )
        errors: list[str] = []
        pairs: dict[str, str] = {}
        first_seen: dict[str, int] = {}
        owner: dict[int, tuple[str, int]] = {}
        for i, item in enumerate(items):
            where = f"item {i}"
            if not isinstance(item, Mapping):
                errors.append(f"{where}: expected an object with entra_id and associate_id, got {_kind(item)}")
                continue
            eid = item.get("entra_id")
            aid = item.get("associate_id")
            bad = False
            if not isinstance(eid, str) or not eid.strip():
                got = "missing" if "entra_id" not in item else repr(eid)
                errors.append(f"{where}: entra_id must be a non-empty string (got {got})")
                bad = True
            if isinstance(aid, bool) or not isinstance(aid, int) or aid <= 0:
                got = "missing" if "associate_id" not in item else repr(aid)
                errors.append(f"{where}: associate_id must be a positive integer (got {got})")
                bad = True
            if bad:
                continue
            assert isinstance(eid, str)
            assert isinstance(aid, int)
            eid = eid.strip()
            if eid in pairs and pairs[eid] != str(aid):
                errors.append(
                    f"{where}: entra_id {eid} is already linked to associate_id {pairs[eid]} by item {first_seen[eid]}"
                )
                continue
            if aid in owner and owner[aid][0] != eid:
                errors.append(
                    f"{where}: associate_id {aid} is already linked to entra_id {owner[aid][0]} by item {owner[aid][1]}"
                )
                continue
            pairs[eid] = str(aid)
            first_seen.setdefault(eid, i)
            owner.setdefault(aid, (eid, i))
        if errors:
            raise LinkImportError(errors)
        if not pairs:
            return 0
        with self._tx() as conn:
            return self._upsert_links(conn, pairs)

    # -- runs -----------------------------------------------------------------------------------------

    def start_run(
        self,
        mode: str,
        *,
        plan_hash: str | None = None,
        source_users: int | None = None,
        flow_run_id: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record a run as ``running``; return its id (a new UUID unless ``run_id`` is given)."""
        rid = run_id or str(uuid.uuid4())
        with self._tx() as conn:
            conn.execute(
                sa.insert(t.runs).values(
                    id=rid,
                    started_at=_now(),
                    mode=mode,
                    status="running",
                    plan_hash=plan_hash,
                    source_users=source_users,
                    flow_run_id=flow_run_id,
                )
            )
        return rid

    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        summary: Mapping[str, Any] | None = None,
        source_users: int | None = None,
        *,
        plan_hash: str | None = None,
    ) -> None:
        """Mark a run finished with ``status`` (one of :data:`RUN_STATUSES`) and its summary.

        ``source_users`` (the Entra users extracted) of a successful run is the base of the next run's
        ``max_source_drop`` guardrail. ``None`` keeps what :meth:`start_run` recorded.
        """
        if status not in RUN_STATUSES:
            msg = f"finish_run: status {status!r} is not one of {', '.join(RUN_STATUSES)}"
            raise StateError(msg)
        values: dict[str, Any] = {"status": status, "finished_at": _now()}
        if summary is not None:
            values["summary"] = dict(summary)
        if source_users is not None:
            values["source_users"] = source_users
        if plan_hash is not None:
            values["plan_hash"] = plan_hash
        with self._tx() as conn:
            result = conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(**values))
            if result.rowcount == 0:
                msg = f"finish_run: no run {run_id!r}"
                raise StateError(msg)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row as a dict, or ``None``."""
        with self._tx() as conn:
            row = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id)).mappings().one_or_none()
        if row is None:
            return None
        out = dict(row)
        out["started_at"] = _aware(out["started_at"])
        out["finished_at"] = _aware(out["finished_at"])
        return out

    def last_successful_source_count(self) -> int | None:
        """The Entra user count of the newest successful run (see :data:`SUCCESSFUL_RUN_STATUSES`)."""
        r = t.runs
        with self._tx() as conn:
            return conn.execute(
                sa.select(r.c.source_users)
                .where(r.c.status.in_(SUCCESSFUL_RUN_STATUSES), r.c.source_users.is_not(None))
                .order_by(r.c.finished_at.desc(), r.c.started_at.desc())
                .limit(1)
            ).scalar_one_or_none()

    # -- journal ----------------------------------------------------------------------------------------

    def journal_begin(
        self, plan_hash: str, rows: Iterable[Mapping[str, Any]] | pl.DataFrame, *, run_id: str | None = None
    ) -> int:
        """Record the plan's rows as ``pending``, keeping rows this plan already has; return how many were new.

        ``rows`` have ``key`` and ``action`` and optionally ``entra_id`` and ``associate_id`` (a plan's rows
        frame works as is). A rerun of the same plan therefore sees what is already done.
        """
        items = rows.iter_rows(named=True) if isinstance(rows, pl.DataFrame) else rows
        now = _now()
        records = [
            {
                "run_id": run_id,
                "plan_hash": plan_hash,
                "key": r["key"],
                "entra_id": r.get("entra_id"),
                "associate_id": _partner_id(r.get("associate_id")),
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
            for chunk in _chunks(records, 5000):
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
        now = _now()
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
                    "associate_id": _partner_id(associate_id),
                    "at": now,
                }
            )
        if not records:
            return 0
        j = t.journal
        with self._tx() as conn:
            for chunk in _chunks(records, 5000):
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
        data = [(*r[:6], _aware(r[6]), r[7]) for r in rows]
        return pl.DataFrame(data, schema=schema, orient="row")

    # -- approvals -------------------------------------------------------------------------------------------

    def record_approval(
        self, run_id: str | None, plan_hash: str, approver: str | None, form: Mapping[str, Any]
    ) -> None:
        """Record an approval form (``approve``, ``comment``, ``hold_actions``, ``hold_users``) for a plan."""
        hold_actions = list(form.get("hold_actions") or [])
        hold_users = list(form.get("hold_users") or [])
        if not all(isinstance(x, str) for x in [*hold_actions, *hold_users]):
            msg = "record_approval: hold_actions and hold_users must be lists of strings"
            raise StateError(msg)
        with self._tx() as conn:
            conn.execute(
                sa.insert(t.approvals).values(
                    run_id=run_id,
                    plan_hash=plan_hash,
                    approver=approver,
                    approve=bool(form.get("approve", False)),
                    comment=form.get("comment") or "",
                    hold_actions=hold_actions,
                    hold_users=hold_users,
                    at=_now(),
                )
            )

    def approvals(self, plan_hash: str) -> list[dict[str, Any]]:
        """Every approval recorded for a plan, oldest first."""
        a = t.approvals
        with self._tx() as conn:
            rows = conn.execute(sa.select(a).where(a.c.plan_hash == plan_hash).order_by(a.c.id)).mappings().all()
        return [{**dict(r), "at": _aware(r["at"])} for r in rows]

    # -- Entra baseline --------------------------------------------------------------------------------------

    def load_baseline(self, tenant: str) -> Baseline | None:
        """The stored Entra frame and delta links of ``tenant``, or ``None`` before the first full read."""
        b = t.baseline
        with self._tx() as conn:
            row = conn.execute(sa.select(b).where(b.c.tenant == tenant)).mappings().one_or_none()
        if row is None:
            return None
        frame = pl.read_parquet(io.BytesIO(row["frame"]))
        updated = _aware(row["updated_at"])
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
            "updated_at": _now(),
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


class _RLockContext:
    """A re-entrant lock usable as a context manager (typed for ``AbstractContextManager``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
