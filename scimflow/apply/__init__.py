"""The apply stage: write an approved plan to the target through a :class:`Writer`, resumably (no Prefect).

One job per module: :mod:`._rows` (plan rows, reading the approved plan back, holds), :mod:`._writer` (the
writer protocol, the engine's only view of a target), :mod:`._engine` (a chunk: journal, drift re-read,
writes, read-back; :func:`finish_apply`), :mod:`._pool` (chunks, their turns, the shared writer threads),
:mod:`._run` (:class:`ApplySession`, :func:`apply_plan`), :mod:`._outcome` (the
report and how a run ended) and :mod:`._approval` (the sync run's approval decisions). Start at
:func:`apply_plan`.
"""

from __future__ import annotations

from scimflow.apply._approval import (
    MAX_REFUSALS,
    Approval,
    ApprovedBy,
    ChangeClass,
    Conclusion,
    FormCheck,
    FormReply,
    applies_unattended,
    approved_in_advance,
    approver_label,
    automatic_approval,
    check_form,
    held_by,
    held_classes_for,
    second_round,
)
from scimflow.apply._engine import apply_chunk, finish_apply, hold_rows, verify
from scimflow.apply._outcome import (
    PARTIAL_STATE_NAMES,
    ApplyReport,
    FinalState,
    SyncFailed,
    SyncResult,
    SyncStatus,
    final_state_of,
    status_of,
)
from scimflow.apply._pool import LOOKAHEAD, ChunkTurns, WritePool, chunk_rows, frozen_heap
from scimflow.apply._rows import (
    PlanChangedError,
    PlanRow,
    RowResult,
    outcome_counts,
    plan_file_hash,
    read_plan,
    split_held,
)
from scimflow.apply._run import HELD_WHY, ApplySession, apply_plan, apply_rows, entra_baseline
from scimflow.apply._writer import RowKey, TargetView, Writer
from scimflow.writers import new_writer

__all__ = [
    "HELD_WHY",
    "LOOKAHEAD",
    "MAX_REFUSALS",
    "PARTIAL_STATE_NAMES",
    "ApplyReport",
    "ApplySession",
    "Approval",
    "ApprovedBy",
    "ChangeClass",
    "ChunkTurns",
    "Conclusion",
    "FinalState",
    "FormCheck",
    "FormReply",
    "PlanChangedError",
    "PlanRow",
    "RowKey",
    "RowResult",
    "SyncFailed",
    "SyncResult",
    "SyncStatus",
    "TargetView",
    "WritePool",
    "Writer",
    "applies_unattended",
    "apply_chunk",
    "apply_plan",
    "apply_rows",
    "approved_in_advance",
    "approver_label",
    "automatic_approval",
    "check_form",
    "chunk_rows",
    "entra_baseline",
    "final_state_of",
    "finish_apply",
    "frozen_heap",
    "held_by",
    "held_classes_for",
    "hold_rows",
    "new_writer",
    "outcome_counts",
    "plan_file_hash",
    "read_plan",
    "second_round",
    "split_held",
    "status_of",
    "verify",
]
