"""Build the inverse plan of an applied plan and write it as ordinary plan files (no write to the target).

:func:`build_undo` resolves the run id or plan hash, reads the plan files and the journal, reads today's
target through the config's writer (:func:`scimflow.writers.new_writer`: the same bulk read and the same
field comparison the apply engine's drift check uses), decides each applied row (:func:`~._inverse.judge`),
and writes ``plan.jsonl``, ``summary.json``, ``plan.parquet`` and ``links.jsonl`` with
:func:`scimflow.plan.write_plan_files`, so ``scimflow apply DIR`` reads them as any plan, under the same
approval (the hash confirmed or ``--approve HASH``), drift re-read, journal and guardrails.

- A user still as the run left it gets the inverse row (``update``, ``retire`` or ``reactivate``).
- A user changed since (or gone) is **held**: a ``conflict`` row with ``changes`` ``{}`` and the reason
  (the fields that changed). ``scimflow apply`` never applies conflict rows, and the diff lists them under
  "conflict (not applied)", so the undo plan shows what it leaves alone.
- A user already back where the run found it gets no row; it is counted ``unchanged``.
- Rows the run did not apply (held, drifted, failed, pending, rejected) are not reversed.
- A SCIM target's group rows are not reversed as such (computed groups are never deleted); the inverse
  plan lists the ``update_group`` / ``create_group`` rows that follow from its user rows, as a plan does.

Guardrails: the inverse plan is judged by the config's ``max_retire`` and ``max_changes`` against the
state store's linked users (an undo reads no Entra extract and not the whole target, so there is no source
health to judge); classes over budget are held by ``scimflow apply`` as for any plan.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from scimflow.undo._groups import group_names, group_rows
from scimflow.undo._inverse import inverse_of, judge
from scimflow.undo._source import (
    APPLIED,
    AppliedRow,
    applied_rows,
    check_target,
    find_plan_folder,
    resolve,
    search_folders,
)
from scimflow.vocab import before_retirement

if TYPE_CHECKING:
    from scimflow.apply import Writer
    from scimflow.config import Config
    from scimflow.state import StateStore

__all__ = ["Held", "UndoResult", "build_undo", "undo_dir"]


@dataclass(frozen=True)
class Held:
    """An applied row the undo leaves alone: ``why`` is ``drifted`` (``fields`` changed) or ``gone``."""

    key: str
    action: str
    why: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class UndoResult:
    """A written inverse plan: its hash and folder, the plan it reverses, and what was left alone."""

    plan_hash: str
    out: Path
    undone: str
    runs: tuple[str, ...]
    source: Path | None
    summary: dict[str, Any]
    row_count: int
    change_count: int
    held: list[Held] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    not_applied: dict[str, int] = field(default_factory=dict)


def undo_dir(config: Config, plan_hash: str) -> Path:
    """The default folder of an inverse plan: ``<out_dir>/<UTC time>-undo-<first 8 of the hash>``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(config.out_dir) / f"{stamp}-undo-{plan_hash[:8]}"


def _changes_text(changes: Mapping[str, Any]) -> str:
    return json.dumps(changes, sort_keys=True, separators=(",", ":"))


def _row(applied: AppliedRow, action: str, changes: Mapping[str, Any], reason: str) -> dict[str, Any]:
    r = applied.row
    return {
        "action": action,
        "key": str(r.get("key")),
        "entra_id": r.get("entra_id"),
        "associate_id": applied.partner_id,
        "rules": [],
        "changes": _changes_text(changes),
        "reason": reason,
        "explain": None,
    }


def _decide(
    config: Config, undone: str, applied: Sequence[AppliedRow], writer: Writer
) -> tuple[list[dict[str, Any]], list[Held], list[str], dict[str, Mapping[str, Any]]]:
    """Inverse rows and held (conflict) rows, the keys already undone, and the records read."""
    target = "scim" if config.target == "scim" else "superoffice"
    ids = sorted({a.partner_id for a in applied if a.partner_id is not None})
    records = writer.read_users(ids) if ids else {}
    head = f"undo of plan {undone[:12]}"
    rows: list[dict[str, Any]] = []
    held: list[Held] = []
    already: list[str] = []
    for a in applied:
        action, key = str(a.row.get("action")), str(a.row.get("key"))
        kept = before_retirement(a.detail)
        inverse = inverse_of(
            action, a.row.get("changes") or {}, target=target, before=kept if isinstance(kept, dict) else None
        )
        current = records.get(a.partner_id) if a.partner_id is not None else None
        verdict = judge(inverse, current, writer.differences)
        if verdict.kind == "inverse":
            reason = f"{head}: reverses its {action}" + (f"; {inverse.note}" if inverse.note else "")
            rows.append(_row(a, inverse.action, inverse.changes, reason))
        elif verdict.kind == "already_undone":
            already.append(key)
        elif verdict.kind == "gone":
            why = "the user is gone from the target" if a.partner_id is not None else "the journal holds no id"
            held.append(Held(key, action, "gone"))
            rows.append(_row(a, "conflict", {}, f"{head}: its {action} is not reversed: {why}"))
        else:
            held.append(Held(key, action, "drifted", tuple(verdict.fields)))
            changed = ", ".join(verdict.fields)
            reason = f"{head}: its {action} is not reversed: changed in the target since ({changed}); held, never overwritten"
            rows.append(_row(a, "conflict", {}, reason))
    return rows, held, already, records


def _group_rows(
    config: Config, rows: list[dict[str, Any]], records: Mapping[str, Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A SCIM target's group rows following from the inverse user rows (:mod:`._groups`); the groups they
    name are looked up by ``displayName`` (one request each) to tell ``update_group`` from ``create_group``."""
    from scimflow.connectors.scim import ScimClient

    scim = config.require_scim()
    names = group_names(rows, scim.group_prefix)
    existing: dict[str, str] = {}
    if names:
        with ScimClient(scim, ca_bundle=config.ca_bundle) as client:
            for name in sorted(names):
                group = client.find_group(name)
                if group is not None and group.get("id"):
                    existing[name] = str(group["id"])
    current = {pid: list(rec.get("groups") or []) for pid, rec in records.items()}
    return group_rows(rows, current, existing, scim.group_prefix)


def _frame(rows: list[dict[str, Any]], target: str) -> pl.DataFrame:
    from scimflow.plan import ROW_SCHEMA

    schema: dict[str, Any] = dict(ROW_SCHEMA)
    if target == "scim":
        schema["associate_id"] = pl.String
    else:
        for r in rows:
            r["associate_id"] = None if r["associate_id"] is None else int(r["associate_id"])
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def build_undo(
    config: Config,
    store: StateStore,
    ref: str,
    *,
    out: Path | None = None,
    plans: Sequence[Path] = (),
    writer: Writer | None = None,
) -> UndoResult:
    """Write the inverse plan of the plan ``ref`` names (a run id, a plan hash, or a unique prefix of 8+).

    Reads the target (never writes it): ``writer`` defaults to :func:`scimflow.writers.new_writer` (closed
    afterwards). Raises :class:`~scimflow.undo.UndoError` for an unknown or ambiguous ``ref``, plan files
    that cannot be found, or plan files made for the other kind of target.
    """
    from scimflow.diff import read_plan_rows
    from scimflow.plan import COUNT_KEYS, Plan, evaluate_guardrails, write_plan_files
    from scimflow.vocab import CHANGE_ACTIONS
    from scimflow.writers import new_writer

    resolved = resolve(store, ref)
    undone = resolved.plan_hash
    statuses = store.journal_status(undone)
    target = "scim" if config.target == "scim" else "superoffice"
    source: Path | None = None
    applied: list[AppliedRow] = []
    not_applied: dict[str, int] = {}
    for status in statuses.values():
        if status not in APPLIED:
            not_applied[status] = not_applied.get(status, 0) + 1
    rows: list[dict[str, Any]] = []
    held: list[Held] = []
    already: list[str] = []
    counts = dict.fromkeys(COUNT_KEYS, 0)
    groups: list[dict[str, Any]] = []
    if any(s in APPLIED for s in statuses.values()):
        source = find_plan_folder(undone, search_folders(config, resolved, plans))
        plan_rows = read_plan_rows(source)
        applied, not_applied = applied_rows(store, undone, plan_rows)
        check_target(config, undone, plan_rows, applied)
        with ExitStack() as stack:
            if writer is None:
                writer = new_writer(config)
                stack.callback(writer.close)
            rows, held, already, records = _decide(config, undone, applied, writer)
        if target == "scim":
            groups, group_counts = _group_rows(config, rows, records)
            counts.update(group_counts)
    for r in rows:
        counts[r["action"]] = counts.get(r["action"], 0) + 1
    counts["unchanged"] = len(already)
    frame = _frame([*rows, *groups], target).sort("key", "entra_id", nulls_last=False)
    linked = store.links(string_ids=True).height
    plan = Plan(rows=frame, counts=counts, managed_active=linked, managed=linked)
    verdict = evaluate_guardrails(plan, config.guardrails, config.guardrails.min_source_users, None)
    folder = Path(out) if out is not None else undo_dir(config, undone)
    plan_hash = write_plan_files(plan, verdict, folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return UndoResult(
        plan_hash=plan_hash,
        out=folder,
        undone=undone,
        runs=resolved.runs,
        source=source,
        summary=summary,
        row_count=frame.height,
        change_count=sum(1 for r in rows if r["action"] in CHANGE_ACTIONS),
        held=held,
        already=already,
        not_applied=not_applied,
    )
