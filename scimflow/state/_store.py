"""The state store: links, runs, the apply journal, approvals and the Entra baseline, in one database.

SQLite by default (one owner-only file), PostgreSQL at scale (``postgresql+psycopg://...``). The schema
is Alembic-managed; :class:`StateStore` migrates to the newest revision when it opens.

Concurrency: every method is one short transaction, so a store may be shared by threads (the apply
workers call :meth:`StateStore.journal_mark` from a pool). On SQLite the database runs in WAL mode with a
busy timeout and every transaction starts with ``BEGIN IMMEDIATE``, so concurrent writers (threads or
processes) queue instead of failing with "database is locked".

One job per module: ``_engine`` (opening the database, the SQLite file made safely), ``_base`` (the
transaction, the Alembic bootstrap, :class:`StateError`), and one part each for ``_links``, ``_runs``,
``_journal``, ``_approvals`` and ``_baseline``; :class:`StateStore` is their union.
"""

from __future__ import annotations

from scimflow.state._approvals import ApprovalsPart
from scimflow.state._base import HEAD_REVISION, StateError
from scimflow.state._baseline import Baseline, BaselinePart
from scimflow.state._journal import JournalPart, JournalStatus
from scimflow.state._links import LinkImportError, LinksPart
from scimflow.state._pending import PendingPart
from scimflow.state._rule_history import AppliedRules, RuleHistoryPart
from scimflow.state._runs import RUN_STATUSES, SUCCESSFUL_RUN_STATUSES, RunsPart, RunStatus

__all__ = [
    "HEAD_REVISION",
    "RUN_STATUSES",
    "SUCCESSFUL_RUN_STATUSES",
    "AppliedRules",
    "Baseline",
    "JournalStatus",
    "LinkImportError",
    "RunStatus",
    "StateError",
    "StateStore",
]


class StateStore(LinksPart, RunsPart, JournalPart, ApprovalsPart, BaselinePart, RuleHistoryPart, PendingPart):
    """The scimflow state database. Open with a SQLAlchemy URL; it is created and migrated on open.

    Example::

        store = StateStore("sqlite:///.scimflow/state.db")
        store.upsert_links([("6f1c...", 11)])
        store.links()  # polars frame: entra_id (String), associate_id (Int64)

    Args:
        url: ``sqlite:///path/state.db`` (missing folders are created 0700, the folder must be private
            (:func:`scimflow.files.check_private_folder`), and the file is created 0600 without following
            a symlink), ``sqlite://`` (in memory, for tests) or ``postgresql+psycopg://user@host/db``.

    Raises:
        StateError: the database cannot be reached, its SQLite file or folder is unsafe, or its schema is
            newer than this scimflow knows.
    """

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"
