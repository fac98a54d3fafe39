"""``scimflow undo``: the inverse of an applied plan, from the journal, as ordinary plan files.

:func:`build_undo` names the plan (a run id, a plan hash, or a unique prefix), reads its plan files and its
journal, checks each applied row against the target as it is today, and writes an inverse plan that
``scimflow apply DIR`` applies under the same approval. It never writes to the target. One job per module:
:mod:`._source` (which plan, its files, its applied rows, the target check), :mod:`._inverse` (what undoing
one row means; drift), :mod:`._build` (the inverse plan written).
"""

from __future__ import annotations

from scimflow.undo._build import Held, UndoResult, build_undo, undo_dir
from scimflow.undo._inverse import Inverse, Verdict, inverse_of, judge, swap
from scimflow.undo._source import (
    APPLIED,
    MIN_REF,
    AppliedRow,
    Resolved,
    UndoError,
    applied_rows,
    check_target,
    find_plan_folder,
    resolve,
    search_folders,
)

__all__ = [
    "APPLIED",
    "MIN_REF",
    "AppliedRow",
    "Held",
    "Inverse",
    "Resolved",
    "UndoError",
    "UndoResult",
    "Verdict",
    "applied_rows",
    "build_undo",
    "check_target",
    "find_plan_folder",
    "inverse_of",
    "judge",
    "resolve",
    "search_folders",
    "swap",
    "undo_dir",
]
