"""Who a plan affects, for the top of the preview, and the whole plan as pages of a table.

An approver reads the preview from the top: :func:`affected_lines` names every user the plan retires, then
the updates that change the most fields, before any count; whatever is left out is said in so many words
("and N more") with where to read it. :func:`plan_pages` splits every plan row (riskiest first) into
table pages the Prefect layer publishes as table artifacts, so the whole plan is readable in the UI.
Pure functions over the plan's rows (as in ``plan.jsonl``); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scimflow import preview
from scimflow.vocab import GROUP_ACTIONS

if TYPE_CHECKING:
    from scimflow.apply import PlanRow

__all__ = [
    "MAX_PAGES",
    "PAGE_ROWS",
    "RETIRE_CAP",
    "UPDATE_TOP",
    "PlanPages",
    "affected_lines",
    "largest_updates",
    "page_key",
    "pages_lines",
    "plan_pages",
    "retirements",
]

#: Rows per table page; pages beyond :data:`MAX_PAGES` are not published (the stored files hold them).
PAGE_ROWS = 1000
MAX_PAGES = 50
#: Retirements named at the top of the preview (all of them up to this many), and updates shown.
RETIRE_CAP = 100
UPDATE_TOP = 10
_CHANGES_CHARS = 160


@dataclass(frozen=True)
class PlanPages:
    """The published pages of a plan: their artifact keys, the rows per page and the plan's row count."""

    keys: tuple[str, ...]
    page_rows: int
    total_rows: int

    @property
    def covered(self) -> int:
        """Rows the published pages hold (all of them unless the plan has more than ``MAX_PAGES`` pages)."""
        return min(self.total_rows, len(self.keys) * self.page_rows)


def page_key(prefix: str, n: int) -> str:
    """The artifact key of page ``n`` (from 1) of a run's plan: ``<tenant>-plan-<run>-<n>``."""
    return f"{prefix}-{n}"


def retirements(rows: Sequence[PlanRow]) -> list[PlanRow]:
    """Every retire row, by key."""
    return sorted((r for r in rows if r.action == "retire"), key=lambda r: r.key)


def largest_updates(rows: Sequence[PlanRow]) -> list[PlanRow]:
    """Update rows, the most changed fields first (then plan or role changes, then by key)."""
    updates = [r for r in rows if r.action == "update"]
    return sorted(updates, key=lambda r: (-len(r.changes), preview.risk_order(r), r.key))


def _short_changes(row: PlanRow) -> str:
    text = "; ".join(f"{f}: {_v(c.get('from'))} → {_v(c.get('to'))}" for f, c in sorted(row.changes.items()))
    return text if len(text) <= _CHANGES_CHARS else text[: _CHANGES_CHARS - 1] + "…"


def _v(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, list):
        return "[" + ", ".join(str(x) for x in value) + "]"
    return str(value)


def _where(pages: PlanPages | None, plan_file: str) -> str:
    """Where the rows left out of the preview are: the pages (which ones), else the plan file."""
    if pages is None or not pages.keys:
        return f"see {preview.md_code(plan_file)}"
    first, last = preview.md_code(pages.keys[0]), preview.md_code(pages.keys[-1])
    named = first if len(pages.keys) == 1 else f"{first} … {last}"
    return f"see the plan pages ({named})"


def affected_lines(
    rows: Sequence[PlanRow],
    *,
    pages: PlanPages | None = None,
    plan_file: str = "plan.jsonl",
    retire_cap: int = RETIRE_CAP,
    update_top: int = UPDATE_TOP,
) -> list[str]:
    """The "Who is affected" section: every retirement by user key (at most ``retire_cap``), then the
    ``update_top`` updates that change the most fields; each list says how many it leaves out and where."""
    users = [r for r in rows if r.action not in GROUP_ACTIONS]
    retired, updated = retirements(users), largest_updates(users)
    where = _where(pages, plan_file)
    lines = ["", "## Who is affected", ""]
    if not retired and not updated:
        return [*lines, "No user is retired or updated by this plan."]
    if retired:
        shown = retired[:retire_cap]
        every = "every one" if len(shown) == len(retired) else f"the first {len(shown)} by key"
        lines += [f"**Retired ({len(retired)})**, {every}:", "", "| user | reason |", "|---|---|"]
        lines += [f"| {preview.md_text(r.key)} | {preview.md_text(r.reason or '')} |" for r in shown]
        if len(retired) > len(shown):
            lines += ["", f"… and {len(retired) - len(shown)} more retirements — {where}."]
    else:
        lines.append("**Retired:** nobody.")
    if updated:
        shown = updated[:update_top]
        lines += [
            "",
            f"**Largest updates** ({len(shown)} of {len(updated)}, most changed fields first):",
            "",
            "| user | fields | changes |",
            "|---|---:|---|",
        ]
        lines += [
            f"| {preview.md_text(r.key)} | {len(r.changes)} | {preview.md_text(_short_changes(r))} |" for r in shown
        ]
        if len(updated) > len(shown):
            lines += ["", f"… and {len(updated) - len(shown)} more updates — {where}."]
    return lines


def plan_pages(
    rows: Sequence[PlanRow], *, page_rows: int = PAGE_ROWS, max_pages: int = MAX_PAGES
) -> list[list[dict[str, Any]]]:
    """Every plan row, riskiest first, numbered, in pages of ``page_rows`` (at most ``max_pages`` pages)."""
    if page_rows < 1:
        msg = f"page_rows must be 1 or more, not {page_rows}"
        raise ValueError(msg)
    table = preview.changes_table(rows, cap=min(len(rows), page_rows * max_pages))
    numbered = [{"#": i, **row} for i, row in enumerate(table, start=1)]
    return [numbered[i : i + page_rows] for i in range(0, len(numbered), page_rows)]


def pages_lines(pages: PlanPages, *, stored: str | None, plan_file: str) -> list[str]:
    """Where the whole plan is: the page artifacts (and whether they hold every row) and the stored files."""
    lines: list[str] = []
    if stored:
        lines.append(f"**Plan files stored at:** {preview.md_code(stored)}  ")
    if pages.keys:
        first, last = preview.md_code(pages.keys[0]), preview.md_code(pages.keys[-1])
        named = first if len(pages.keys) == 1 else f"{first} to {last}"
        lines.append(
            f"**The whole plan:** {pages.total_rows} rows, riskiest first, in {len(pages.keys)} table "
            f"page{'s' if len(pages.keys) != 1 else ''} of up to {pages.page_rows} rows ({named})"
        )
        if pages.covered < pages.total_rows:
            rest = pages.total_rows - pages.covered
            lines[-1] += f"; the pages hold the first {pages.covered}, the other {rest} are only in "
            lines[-1] += preview.md_code(stored or plan_file)
    return lines
