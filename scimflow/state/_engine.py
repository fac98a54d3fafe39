"""Opening the database: the SQLite file made owner-only and safely, and SQLite's locking set up.

The SQLite file's folder (and any missing folder above it) is created 0700 and then checked with
:func:`scimflow.files.check_private_folder`: a folder that is a symlink, someone else's, or writable by
group or others is refused, since whoever can write to it can swap the database. The file itself is
created 0600 with ``O_NOFOLLOW``, so a symlink planted under its name is refused, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from scimflow.files import check_private_folder

__all__ = ["RLockContext", "prepare_sqlite_file", "sqlite_engine"]

_BUSY_TIMEOUT_MS = 30_000
_OPEN_FILE = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def prepare_sqlite_file(database: str) -> None:
    """Create the SQLite file (and any missing folders) owner-only, before SQLite touches it.

    Raises:
        UnsafePathError: the folder is a symlink, not ours, or writable by group or others.
        OSError: the file is a symlink (``ELOOP``, with a message saying so) or cannot be created.
    """
    path = Path(database).expanduser()
    missing: list[Path] = []
    parent = path.parent
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)  # another thread or process opening the store may be first
        folder.chmod(0o700)  # mkdir's mode is masked by the umask; checked below before the file is opened
    check_private_folder(path.parent)
    try:
        fd = os.open(path, _OPEN_FILE, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            msg = f"state file {path} is a symlink: refused (give the real file, {os.path.realpath(path)})"
            raise OSError(errno.ELOOP, msg) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            msg = f"state file {path} is not a regular file"
            raise OSError(errno.EINVAL, msg)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def sqlite_engine(url: sa.URL) -> tuple[Engine, bool]:
    """An engine for a SQLite URL (WAL, busy timeout, ``BEGIN IMMEDIATE``) and whether it is in memory."""
    database = url.database or ""
    memory = database in ("", ":memory:") or "mode=memory" in str(url.query)
    if memory:
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        prepare_sqlite_file(database)
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


class RLockContext:
    """A re-entrant lock usable as a context manager (typed for ``AbstractContextManager``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
