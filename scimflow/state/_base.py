"""The store's footing: its error, opening the engine, the Alembic bootstrap, and the helpers every part shares.

:class:`StoreBase` holds what every part of :class:`~scimflow.state.StateStore` writes through: the
engine, one short transaction per call (:meth:`StoreBase._tx`), the dialect's upsert-capable insert, and
the migration to :data:`HEAD_REVISION` when the store opens. The parts (links, runs, journal, approvals,
baseline) are mixins over it, one module each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url

from scimflow.errors import ScimflowError
from scimflow.files import UnsafePathError
from scimflow.state._engine import RLockContext, sqlite_engine

__all__ = ["HEAD_REVISION", "StateError", "StoreBase", "aware", "chunks", "partner_id", "utc_now"]

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration's revision. Opening a database already there skips importing Alembic (it is slow
#: to import); ``tests/test_state.py`` checks this against the migration scripts.
HEAD_REVISION = "0004"
_IN_CHUNK = 900  # bound parameters per IN (...) list; SQLite's limit is far above, but keep statements small
_PG_MIGRATION_LOCK = 0x5C1F_0001  # pg_advisory_xact_lock key: one migrator at a time

_T = TypeVar("_T")


class StateError(ScimflowError, RuntimeError):
    """The state store cannot be opened or migrated, or a call's arguments are invalid."""


def utc_now() -> dt.datetime:
    """The current time, UTC."""
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything the store writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def partner_id(value: object) -> str | None:
    """A partner id as stored: its text (an integer as its decimal digits); ``None`` for none or blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def chunks(seq: Sequence[_T], size: int = _IN_CHUNK) -> Iterator[Sequence[_T]]:
    """``seq`` in slices of at most ``size`` (bound parameters per statement)."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class StoreBase:
    """The engine, the transaction and the migration under every part of the state store."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as exc:
            msg = f"state_url {url!r} is not a database URL: {exc}"
            raise StateError(msg) from None
        self._url = parsed
        self._lock: AbstractContextManager[Any]
        if parsed.get_backend_name() == "sqlite":
            try:
                self._engine, memory = sqlite_engine(parsed)
            except UnsafePathError as exc:
                msg = f"state store {self.url}: {exc}"
                raise StateError(msg) from None
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename else ""
                msg = f"state store {self.url}: cannot use its file: {exc.strerror}{where}"
                raise StateError(msg) from None
            # One shared in-memory connection: serialise its transactions in-process.
            self._lock = RLockContext() if memory else nullcontext()
        else:
            self._engine = sa.create_engine(parsed, pool_pre_ping=True)
            self._lock = nullcontext()
        self._dialect = self._engine.dialect.name
        try:
            self._migrate()
        except Exception:
            self._engine.dispose()
            raise

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

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock, self._engine.begin() as conn:
            yield conn

    def _current_revision(self) -> str | None:
        try:
            with self._tx() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                revision: str | None = conn.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar_one_or_none()
                return revision
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
            revision: str | None = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
            return revision
