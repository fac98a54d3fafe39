"""The scimflow state store: links, runs, the apply journal, approvals and the Entra baseline.

See :class:`StateStore`. The schema is managed by the Alembic migrations in ``migrations/``, applied in
code when a store opens.
"""

from __future__ import annotations

from scimflow.state._crashed import mark_crashed_runs, running_runs
from scimflow.state._queries import (
    BaselineInfo,
    JournalEntry,
    LinkInfo,
    StoreOverview,
    baseline_info,
    journal_entries,
    store_overview,
)
from scimflow.state._store import (
    HEAD_REVISION,
    RUN_STATUSES,
    SUCCESSFUL_RUN_STATUSES,
    Baseline,
    JournalStatus,
    LinkImportError,
    RunStatus,
    StateError,
    StateStore,
)
from scimflow.state._tables import JOURNAL_STATUSES

__all__ = [
    "HEAD_REVISION",
    "JOURNAL_STATUSES",
    "RUN_STATUSES",
    "SUCCESSFUL_RUN_STATUSES",
    "Baseline",
    "BaselineInfo",
    "JournalEntry",
    "JournalStatus",
    "LinkImportError",
    "LinkInfo",
    "RunStatus",
    "StateError",
    "StateStore",
    "StoreOverview",
    "baseline_info",
    "journal_entries",
    "mark_crashed_runs",
    "running_runs",
    "store_overview",
]
