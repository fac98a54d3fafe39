"""``scimflow journal``: what happened to a user, a run or a plan: the change, who approved it, the outcome.

The journal rows come from the state store (:func:`scimflow.state._queries.journal_entries`); the
``from → to`` of each change comes from the plan files the rows' plan hash names (each flow run writes
them under ``out_dir``; ``--plans`` adds folders such as a ``scimflow plan --out`` folder). A row whose
plan files are gone still shows its action, status and approver.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from scimflow.config import ConfigError, load_config
from scimflow.state import JournalEntry, StateError, StateStore, journal_entries

__all__ = ["find_plan_changes", "format_changes", "parse_since", "run_journal"]

_SINCE_RE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` ago, or an ISO date/time (``2026-11-01``, UTC unless it says)."""
    now = now or dt.datetime.now(dt.UTC)
    m = _SINCE_RE.match(value)
    if m:
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        msg = f"--since {value!r}: give a date (2026-11-01), a date and time (2026-11-01T08:00), or an age (7d, 12h)"
        raise ValueError(msg) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _summary_files(folders: Iterable[Path]) -> Iterable[Path]:
    for folder in folders:
        if not folder.is_dir():
            continue
        yield from (p for p in [folder / "summary.json"] if p.is_file())
        yield from sorted(folder.glob("*/summary.json"))


def find_plan_changes(
    folders: Sequence[Path], hashes: set[str], keys: set[str]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``{(plan_hash, key, action): plan row}`` for the plans among ``hashes`` whose files are in ``folders``.

    Looks at ``FOLDER/summary.json`` and ``FOLDER/*/summary.json`` (one folder per flow run) and reads the
    ``plan.jsonl`` beside a summary whose ``plan_hash`` is wanted; only rows of ``keys`` are kept.
    """
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    seen: set[str] = set()
    for summary in _summary_files(folders):
        try:
            plan_hash = json.loads(summary.read_text(encoding="utf-8")).get("plan_hash")
        except (OSError, ValueError, AttributeError):
            continue
        if plan_hash not in hashes or plan_hash in seen:
            continue
        try:
            lines = (summary.parent / "plan.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        seen.add(plan_hash)
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("key") in keys:
                found[(plan_hash, row["key"], row.get("action", ""))] = row
    return found


def _value(v: Any) -> str:
    if v is None:
        return "∅"
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def format_changes(changes: Any) -> list[str]:
    """One ``field: from → to`` line per change (``field = to`` when there was no value before)."""
    if not isinstance(changes, dict):
        return []
    out: list[str] = []
    for field, change in sorted(changes.items()):
        if isinstance(change, dict) and ("from" in change or "to" in change):
            before, after = change.get("from"), change.get("to")
            out.append(
                f"{field} = {_value(after)}" if before is None else f"{field}: {_value(before)} → {_value(after)}"
            )
        else:
            out.append(f"{field} = {_value(change)}")
    return out


def _record(entry: JournalEntry, row: dict[str, Any] | None) -> dict[str, Any]:
    out = entry.to_dict()
    out["changes"] = row.get("changes") if row is not None else None
    out["reason"] = row.get("reason") if row is not None else None
    out["plan_files_found"] = row is not None
    return out


def _approval(entry: JournalEntry) -> str:
    if entry.approved is None:
        return "—" if entry.run_mode != "auto" else "auto"
    who = entry.approver or "(unknown)"
    return who if entry.approved else f"{who} (rejected)"


_STATUS_STYLE = {
    "verified": "green",
    "applied": "green",
    "held": "yellow",
    "drifted": "yellow",
    "pending": "yellow",
    "failed": "red",
    "rejected": "red",
}


def _table(records: list[tuple[JournalEntry, dict[str, Any] | None]]) -> Table:
    table = Table(show_lines=False, title="journal", title_justify="left")
    for name in ("when (UTC)", "user", "action", "change", "approved by", "outcome", "plan"):
        table.add_column(name, overflow="fold")
    for entry, row in records:
        lines = format_changes(row.get("changes")) if row is not None else []
        if row is not None and row.get("reason"):
            lines.append(f"reason: {row['reason']}")
        if row is None:
            lines = ["(plan files not found)"]
        outcome = entry.status + (f": {entry.detail}" if entry.detail else "")
        style = _STATUS_STYLE.get(entry.status, "")
        table.add_row(
            entry.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            entry.key,
            entry.action,
            "\n".join(lines) or "—",
            _approval(entry),
            f"[{style}]{outcome}[/{style}]" if style else outcome,
            entry.plan_hash[:12],
        )
    return table


def run_journal(
    *,
    config: Path,
    user: str | None,
    run: str | None,
    plan: str | None,
    since: str | None,
    plans: Sequence[Path],
    as_json: bool,
    limit: int | None,
) -> int:
    """Print the journal rows that match (a table, or JSON lines' list with ``--json``); exit 0, or 1 on error."""
    err = Console(stderr=True, highlight=False)
    try:
        when = parse_since(since) if since else None
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    try:
        cfg = load_config(config)
        with StateStore(cfg.state_url) as store:
            entries = journal_entries(store, user=user, run=run, plan=plan, since=when, limit=limit)
    except (ConfigError, StateError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    folders = [Path(cfg.out_dir), *plans]
    rows = find_plan_changes(folders, {e.plan_hash for e in entries}, {e.key for e in entries})
    records = [(e, rows.get((e.plan_hash, e.key, e.action))) for e in entries]
    if as_json:
        sys.stdout.write(json.dumps([_record(e, r) for e, r in records], indent=2, ensure_ascii=False) + "\n")
        return 0
    out = Console(highlight=False)
    if not out.is_terminal:  # piped: wide enough that a UPN or a change is not folded mid-word
        out = Console(highlight=False, width=220)
    if not records:
        out.print("no journal rows match")
        return 0
    out.print(_table(records))
    return 0
