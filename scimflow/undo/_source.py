"""What an undo starts from: which plan a run id or plan hash names, its plan files, its applied journal rows.

The journal records each row's key, action, Entra id, partner id (a created user's new id included) and
outcome, but not the changes: those are in the plan files the plan hash names (``plan.jsonl``, whose
sha256 *is* the plan hash). So an undo needs both: the journal says what was applied, the plan files what
it changed. The files are looked for where runs leave them: the folder a sync run recorded
(``plan_dir`` in its run summary), ``out_dir`` and its run folders, the ``plan_store`` folder (when it is a
folder), and the folders given with ``--plans``. Neither the journal nor the runs table records the target
or the tenant: the state store is the config's, and :func:`check_target` refuses plan files whose partner
ids or group rows belong to the other kind of target.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from scimflow.errors import ScimflowError
from scimflow.vocab import CHANGE_ACTIONS, GROUP_ACTIONS

if TYPE_CHECKING:
    from scimflow.config import Config
    from scimflow.state import StateStore

__all__ = [
    "APPLIED",
    "MIN_REF",
    "AppliedRow",
    "Resolved",
    "UndoError",
    "applied_rows",
    "check_target",
    "find_plan_folder",
    "resolve",
    "search_folders",
]

#: The fewest characters of a run id or plan hash that name it.
MIN_REF = 8
#: Journal statuses of rows whose change reached the target (``verified``: read back as planned).
APPLIED: tuple[str, ...] = ("applied", "verified")

_REF = re.compile(r"^[0-9a-f-]+$")
_runs = sa.table("runs", sa.column("id"), sa.column("plan_hash"), sa.column("mode"), sa.column("summary", sa.JSON))
_journal = sa.table("journal", sa.column("plan_hash"))


class UndoError(ScimflowError, ValueError):
    """An undo that cannot be made: an unknown or ambiguous reference, missing plan files, another target."""


@dataclass(frozen=True)
class Resolved:
    """The plan an undo reverses: its hash, the runs that recorded it, and the folders they named."""

    plan_hash: str
    runs: tuple[str, ...]
    plan_dirs: tuple[Path, ...]


def _like(prefix: str) -> str:
    return prefix + "%"  # only [0-9a-f-]: no LIKE wildcard to escape


def resolve(store: StateStore, ref: str) -> Resolved:
    """The plan named by ``ref``: a run id or a plan hash, or a unique prefix of at least :data:`MIN_REF`.

    Refuses (:class:`UndoError`) a malformed or too short reference, one that names nothing, a run that
    recorded no plan, and a prefix that names two plans (listing them).
    """
    text = ref.strip().lower()
    if len(text) < MIN_REF or not _REF.match(text):
        msg = (
            f"{ref!r}: give a run id or a plan hash (scimflow journal shows both), "
            f"or their first {MIN_REF} or more characters"
        )
        raise UndoError(msg)
    with store.engine.connect() as conn:
        runs = conn.execute(
            sa.select(_runs.c.id, _runs.c.plan_hash, _runs.c.summary).where(_runs.c.id.like(_like(text)))
        ).all()
        plans: list[str] = []
        if "-" not in text:
            plans = list(
                conn.execute(
                    sa.select(_journal.c.plan_hash).distinct().where(_journal.c.plan_hash.like(_like(text)))
                ).scalars()
            )
    if not runs and not plans:
        msg = f"no run and no journalled plan starts with {text!r} (see `scimflow journal`)"
        raise UndoError(msg)
    no_plan = [str(r.id) for r in runs if not r.plan_hash]
    hashes = sorted({str(r.plan_hash) for r in runs if r.plan_hash} | set(plans))
    if not hashes:
        msg = f"run {no_plan[0]} recorded no plan (nothing was planned or applied): nothing to undo"
        raise UndoError(msg)
    if len(hashes) > 1:
        named = [f"plan {h[:12]}…" for h in hashes]
        msg = f"{text!r} is ambiguous: it names {', '.join(named)}; give more characters"
        raise UndoError(msg)
    plan_hash = hashes[0]
    with store.engine.connect() as conn:
        mine = conn.execute(sa.select(_runs.c.id, _runs.c.summary).where(_runs.c.plan_hash == plan_hash)).all()
    folders: list[Path] = []
    for _, summary in mine:
        data = json.loads(summary) if isinstance(summary, str) else summary
        if isinstance(data, dict) and isinstance(data.get("plan_dir"), str):
            folders.append(Path(data["plan_dir"]))
    return Resolved(plan_hash, tuple(sorted(str(r.id) for r in mine)), tuple(folders))


def _candidates(folders: Iterable[Path]) -> Iterator[Path]:
    """``F`` and ``F/*`` for each folder ``F`` that holds a summary.json (one folder per run under out_dir)."""
    for folder in folders:
        if not folder.is_dir():
            continue
        if (folder / "summary.json").is_file():
            yield folder
        for summary in sorted(folder.glob("*/summary.json")):
            yield summary.parent


def _plan_hash_of(folder: Path) -> str | None:
    try:
        found = json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("plan_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def search_folders(config: Config, resolved: Resolved, extra: Sequence[Path]) -> list[Path]:
    """Where :func:`find_plan_folder` looks, in order: ``--plans``, the runs' ``plan_dir``, ``out_dir``, and
    the ``plan_store`` folder of this tenant (a URL store is not searched: copy the folder and use ``--plans``)."""
    folders = [*map(Path, extra), *resolved.plan_dirs, Path(config.out_dir)]
    store = getattr(config, "plan_store", None)
    if isinstance(store, str) and "://" not in store:
        folders.append(Path(store) / config.tenant_key)
    return folders


def find_plan_folder(plan_hash: str, folders: Sequence[Path]) -> Path:
    """The folder whose ``plan.jsonl`` has exactly ``plan_hash`` as its sha256 (summary.json agreeing).

    :class:`UndoError` naming the folders searched when there is none: the journal alone does not hold the
    changes an undo reverses.
    """
    for folder in _candidates(folders):
        if _plan_hash_of(folder) != plan_hash:
            continue
        try:
            data = (folder / "plan.jsonl").read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == plan_hash:
            return folder
    where = ", ".join(str(f) for f in folders) or "nowhere"
    msg = (
        f"the plan files of plan {plan_hash[:12]}… are not in {where}: the journal records what was applied, "
        "the plan files what it changed; give the folder the plan was written to (`scimflow plan --out`) with "
        "--plans DIR"
    )
    raise UndoError(msg)


@dataclass(frozen=True)
class AppliedRow:
    """A plan row whose change the journal records as applied, with the partner id the journal holds
    (for a create, the id of the user it made)."""

    row: dict[str, Any]
    partner_id: str | None
    status: str
    detail: str | None = None  # the journal's detail (a retirement's cleared values: vocab.before_retirement)


def applied_rows(
    store: StateStore, plan_hash: str, rows: Sequence[dict[str, Any]]
) -> tuple[list[AppliedRow], dict[str, int]]:
    """The plan's change rows journalled as applied (:data:`APPLIED`), and how many rows each other status has.

    A journal row with no line in the plan files (which cannot be, as the hash matched) is an error.
    """
    by_key = {(str(r.get("key")), str(r.get("action"))): r for r in rows if r.get("action") in CHANGE_ACTIONS}
    journal = store.journal(plan_hash)
    out: list[AppliedRow] = []
    others: dict[str, int] = {}
    for key, action, _, partner, status, detail in journal.select(
        "key", "action", "entra_id", "associate_id", "status", "detail"
    ).iter_rows():
        if status not in APPLIED:
            others[status] = others.get(status, 0) + 1
            continue
        row = by_key.get((key, action))
        if row is None:
            msg = f"plan {plan_hash[:12]}…: the journal's applied row {key} ({action}) is not in its plan files"
            raise UndoError(msg)
        pid = partner if partner is not None else row.get("associate_id")
        out.append(AppliedRow(row=row, partner_id=None if pid is None else str(pid), status=status, detail=detail))
    return out, others


def check_target(config: Config, plan_hash: str, rows: Sequence[dict[str, Any]], applied: Sequence[AppliedRow]) -> None:
    """Refuse plan files made for the other kind of target than ``config``'s.

    A SCIM plan has group rows and string partner ids; a SuperOffice plan integer ids (and a SuperOffice
    AssociateId is a number, so a created user's journalled id must be one).
    """
    ids = [
        r.get("associate_id") for r in rows if r.get("action") in CHANGE_ACTIONS and r.get("associate_id") is not None
    ]
    scim = any(r.get("action") in GROUP_ACTIONS for r in rows) or any(isinstance(i, str) for i in ids)
    so = any(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    if config.target != "scim" and any(a.partner_id is not None and not a.partner_id.isdecimal() for a in applied):
        scim = True
    kind = "scim" if scim and not so else "superoffice" if so and not scim else None
    if scim and so:
        msg = f"plan {plan_hash[:12]}…: its rows mix SuperOffice and SCIM partner ids; refusing to undo it"
        raise UndoError(msg)
    wanted = "scim" if config.target == "scim" else "superoffice"
    if kind is not None and kind != wanted:
        msg = (
            f"plan {plan_hash[:12]}… was applied to a {kind} target, and this config's target is {wanted}: "
            "give the config of the target it was applied to"
        )
        raise UndoError(msg)
