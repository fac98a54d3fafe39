"""A plan as a reader sees it: one line per user, grouped by action, like ``terraform plan``.

``scimflow plan`` prints this after writing the plan files. Rows come from ``plan.jsonl`` (the contract's
shape), so what is shown is exactly what an approval would bind to. The text is built as :class:`rich.text.Text`
(never markup), so directory data such as ``[bold]`` in a display name prints as it is; colour is added by
the console only on a terminal, and the same lines are plain when piped.

    Plan: 2 to create, 1 to update, 1 to retire.

    + create (2)
      + ola.hansen@contoso.com  rules: Employees, Sales
          email            "ola.hansen@contoso.com"
    ~ update (1)
      ~ kari.nordmann@contoso.com  #11
          role             "Sales" → "Manager"
    - retire (1)
      - sara.lind@contoso.com  #12: disabled in Entra ID

A SCIM target's plan also has group rows (``create_group`` / ``update_group``, keyed by the group's name),
shown after the users with one line per member added (``+``) or removed (``-``)::

    + create group (1)
      + scimflow-role-Manager
          + kari.nordmann@contoso.com
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text

__all__ = ["GROUP_SECTIONS", "SECTIONS", "diff_lines", "read_plan_rows", "render_value", "safe_text", "summary_line"]

#: (action, sign, style, heading) in the order sections are shown: what is written first, then what is not.
SECTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("create", "+", "green", "create"),
    ("update", "~", "yellow", "update"),
    ("reactivate", "↺", "cyan", "reactivate"),
    ("retire", "-", "red", "retire"),
    ("quarantine", "!", "magenta", "quarantine (not applied)"),
    ("conflict", "?", "magenta", "conflict (not applied)"),
)
#: The group rows of a SCIM plan, shown after the users' sections (same shape as :data:`SECTIONS`).
GROUP_SECTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("create_group", "+", "green", "create group"),
    ("update_group", "~", "yellow", "update group"),
)
#: How a group row's member changes are shown: (change, sign, style), additions first.
_MEMBER_CHANGES: tuple[tuple[str, str, str, str], ...] = (
    ("members_added", "to", "+", "green"),
    ("members_removed", "from", "-", "red"),
)
_SUMMARY_WORDS = {
    "create": "to create",
    "update": "to update",
    "reactivate": "to reactivate",
    "retire": "to retire",
    "quarantine": "quarantined",
    "conflict": "in conflict",
    "create_group": "group{s} to create",
    "update_group": "group{s} to update",
}
#: Control characters (C0, DEL, C1) and bidirectional overrides: shown escaped, never sent to the terminal.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FIELD_WIDTH = 17
_GROUP_ACTIONS = frozenset(action for action, *_ in GROUP_SECTIONS)


def read_plan_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/plan.jsonl`` as dicts (one per non-empty line)."""
    text = (Path(out) / "plan.jsonl").read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{out}/plan.jsonl line {number}: not JSON ({exc.msg})"
            raise ValueError(msg) from None
        if not isinstance(row, dict):
            msg = f"{out}/plan.jsonl line {number}: expected a JSON object"
            raise ValueError(msg)
        rows.append(row)
    return rows


def safe_text(value: object) -> str:
    """``str(value)`` with control characters and bidi overrides escaped (``\\x1b`` → ``\\u001b``).

    Directory data reaches the terminal through this (keys, reasons, rule names): an escape sequence in a
    display name must not recolour, move or hide the operator's view of the plan.
    """
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(value))


def render_value(value: Any) -> str:
    """A plan value as one short line: strings quoted, lists in brackets, null as ``(none)``."""
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return safe_text(json.dumps(value, ensure_ascii=False))
    return safe_text(value)


def summary_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``Plan: 2 to create, 1 to update.`` (only the actions present), or ``No changes.``"""
    counts = {action: 0 for action, *_ in (*SECTIONS, *GROUP_SECTIONS)}
    for row in rows:
        if row.get("action") in counts:
            counts[str(row["action"])] += 1
    parts = [f"{n} {_SUMMARY_WORDS[a].format(s='' if n == 1 else 's')}" for a, n in counts.items() if n]
    return f"Plan: {', '.join(parts)}." if parts else "No changes. SuperOffice matches the directory and the rules."


def _head(sign: str, style: str, row: Mapping[str, Any]) -> Text:
    line = Text("  ")
    line.append(f"{sign} ", style=style)
    line.append(safe_text(row.get("key", "")), style="bold")
    partner = row.get("associate_id")
    if partner is not None:
        line.append(f"  #{safe_text(partner)}", style="dim")
    if row.get("action") in ("create", "update", "reactivate") and row.get("rules"):
        line.append("  rules: " + ", ".join(safe_text(r) for r in row["rules"]), style="dim")
    if row.get("reason"):
        line.append(f": {safe_text(row['reason'])}")
    return line


def _changes(action: str, style: str, changes: Mapping[str, Any]) -> Iterator[Text]:
    for field in sorted(changes):
        change = changes[field] if isinstance(changes[field], Mapping) else {}
        line = Text("      ")
        line.append(f"{safe_text(field):<{_FIELD_WIDTH}}", style="dim")
        if action == "create":
            line.append(render_value(change.get("to")), style=style)
        else:
            line.append(render_value(change.get("from")))
            line.append(" → ")
            line.append(render_value(change.get("to")), style=style)
        yield line


def _members(changes: Mapping[str, Any], limit: int | None) -> Iterator[Text]:
    """A group row's member changes: one ``+ key`` / ``- key`` line each, cut past ``limit`` with a count."""
    for change, side, sign, style in _MEMBER_CHANGES:
        entry = changes.get(change)
        keys = entry.get(side) if isinstance(entry, Mapping) else None
        if not isinstance(keys, list | tuple) or not keys:
            continue
        shown = keys if limit is None else keys[: max(0, limit)]
        for key in shown:
            line = Text("      ")
            line.append(f"{sign} ", style=style)
            line.append(safe_text(key))
            yield line
        if len(keys) > len(shown):
            word = "added" if sign == "+" else "removed"
            yield Text(f"      … and {len(keys) - len(shown)} more members {word}: see plan.jsonl", style="dim")


def diff_lines(rows: Iterable[Mapping[str, Any]], *, limit: int | None = None) -> Iterator[Text]:
    """The plan as lines of text: a summary, then one section per action with one entry per user.

    ``limit`` caps the users shown per section (and the members shown per change of a group row); the rest
    are counted in a last line (``… and 812 more (update): see plan.jsonl``), so a large plan stays
    readable and nothing is hidden silently. ``None``: everything.
    """
    rows = list(rows)
    yield Text(summary_line(rows), style="bold")
    by_action: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_action.setdefault(str(row.get("action")), []).append(row)
    for action, sign, style, heading in (*SECTIONS, *GROUP_SECTIONS):
        section = by_action.get(action, [])
        if not section:
            continue
        yield Text("")
        yield Text(f"{sign} {heading} ({len(section)})", style=f"bold {style}")
        shown = section if limit is None else section[: max(0, limit)]
        for row in shown:
            yield _head(sign, style, row)
            changes = row.get("changes") or {}
            if not isinstance(changes, Mapping):
                continue
            if action in _GROUP_ACTIONS:
                yield from _members(changes, limit)
            else:  # retire/reactivate: `active` is the heading; other fields below
                shown_changes = {k: v for k, v in changes.items() if not (k == "active" and action != "update")}
                yield from _changes(action, style, shown_changes)
        hidden = len(section) - len(shown)
        if hidden:
            yield Text(f"  … and {hidden} more ({action}): see plan.jsonl", style="dim")
