"""Pure functions that render a plan and an apply report for people: preview markdown, table rows, report.

They read only the plan's rows (as in ``plan.jsonl``) and ``summary.json``, so what an approver sees is
exactly what will be applied. The Prefect layer publishes their output as artifacts; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scimflow.plan import COUNT_KEYS

if TYPE_CHECKING:
    from scimflow.apply import ApplyReport, PlanRow

__all__ = [
    "TABLE_CAP",
    "approval_description",
    "changes_table",
    "preview_markdown",
    "report_markdown",
    "risk_order",
    "rule_hits",
]

#: Rows shown in the changes table; the full plan is in the plan files.
TABLE_CAP = 200
_COUNT_ORDER = COUNT_KEYS  # the nine summary counts, in summary.json order
_RISKY_FIELDS = ("user_plan", "role")


def risk_order(row: PlanRow) -> tuple[int, str]:
    """Sort key putting the riskiest rows first: retirements, plan and role changes, then the rest."""
    if row.action == "retire":
        rank = 0
    elif any(f in row.changes for f in _RISKY_FIELDS) and row.action != "create":
        rank = 1
    elif row.action == "reactivate":
        rank = 2
    elif row.action == "update":
        rank = 3
    elif row.action == "create":
        rank = 4
    else:  # quarantine, conflict: nothing is written, listed for attention
        rank = 5
    return rank, row.key


def rule_hits(rows: Sequence[PlanRow]) -> Counter[str]:
    """How many planned rows each rule matched (unchanged users are not in the plan rows)."""
    return Counter(name for row in rows for name in row.rules)


def _value(v: Any) -> str:
    if v is None:
        return "∅"
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _change_text(row: PlanRow) -> str:
    parts = [f"{f}: {_value(c.get('from'))} → {_value(c.get('to'))}" for f, c in sorted(row.changes.items())]
    return "; ".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def changes_table(rows: Sequence[PlanRow], cap: int = TABLE_CAP) -> list[dict[str, Any]]:
    """The rows for the changes table artifact, riskiest first, at most ``cap`` of them."""
    ordered = sorted(rows, key=risk_order)[:cap]
    return [
        {
            "action": r.action,
            "key": r.key,
            "associate_id": r.associate_id,
            "changes": _change_text(r),
            "rules": ", ".join(r.rules),
            "reason": r.reason or "",
        }
        for r in ordered
    ]


def _guardrail_lines(summary: dict[str, Any]) -> list[str]:
    g = summary.get("guardrails") or {}
    verdict = g.get("verdict", "ok")
    lines = [f"**Guardrails:** `{verdict}`" + (f" — held classes: {', '.join(g['held'])}" if g.get("held") else "")]
    lines += [f"- {r}" for r in g.get("reasons") or []]
    return lines


def preview_markdown(
    summary: dict[str, Any],
    rows: Sequence[PlanRow],
    *,
    plan_dir: Path | str,
    title: str = "scimflow sync preview",
    top: int = 15,
) -> str:
    """The preview: counts per action, guardrail verdict, plan hash, rule hits and the riskiest changes."""
    lines = [
        f"# {title}",
        "",
        f"**Plan hash:** `{summary.get('plan_hash', '')}`  ",
        f"**Plan files:** `{plan_dir}`",
        "",
    ]
    lines += _guardrail_lines(summary)
    lines += ["", "| action | count |", "|---|---:|"]
    lines += [f"| {a} | {int(summary.get(a, 0))} |" for a in _COUNT_ORDER]
    hits = rule_hits(rows)
    if hits:
        lines += ["", "**Rule hits** (planned rows):", "", "| rule | rows |", "|---|---:|"]
        lines += [f"| {_md_cell(name)} | {n} |" for name, n in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))]
    risky = sorted(rows, key=risk_order)[:top]
    if risky:
        lines += [
            "",
            f"**Riskiest changes first** ({len(risky)} of {len(rows)}):",
            "",
            "| action | user | changes / reason |",
            "|---|---|---|",
        ]
        for r in risky:
            what = _change_text(r) or (r.reason or "")
            lines.append(f"| {r.action} | {_md_cell(r.key)} | {_md_cell(what)} |")
    if len(rows) > top:
        lines += ["", f"The full plan ({len(rows)} rows) is in `{Path(plan_dir) / 'plan.jsonl'}`."]
    return "\n".join(lines) + "\n"


def approval_description(summary: dict[str, Any], *, plan_dir: Path | str, preview_key: str) -> str:
    """The approval form's description: the counts, the verdict and the plan hash it binds to."""
    counts = ", ".join(f"{a} {int(summary.get(a, 0))}" for a in _COUNT_ORDER[:6])
    lines = [
        "## Approve this plan?",
        "",
        f"**Plan hash:** `{summary.get('plan_hash', '')}` (the approval applies to exactly this plan)",
        "",
        f"**Rows:** {counts}",
        "",
        *_guardrail_lines(summary),
        "",
        f"Preview: artifact `{preview_key}`; plan files: `{plan_dir}`.",
        "",
        "Set **approve** to apply. `hold_actions` (e.g. `retire`) and `hold_users` (UPNs) are left out.",
    ]
    return "\n".join(lines)


def report_markdown(
    report: ApplyReport | None,
    *,
    status: str,
    plan_hash: str,
    approver: str | None = None,
    comment: str | None = None,
    held_by: dict[str, list[str]] | None = None,
    plan_dir: Path | str | None = None,
) -> str:
    """The report: status, counts (applied, held, drifted, failed, verified) and the rows not applied."""
    lines = ["# scimflow sync report", "", f"**Status:** `{status}`  ", f"**Plan hash:** `{plan_hash}`  "]
    if approver:
        lines.append(f"**Approved by:** {approver}" + (f" — {comment}" if comment else "") + "  ")
    if plan_dir:
        lines.append(f"**Plan files:** `{plan_dir}`")
    if held_by:
        for why, items in held_by.items():
            if items:
                lines.append(f"- held ({why}): {', '.join(items)}")
    if report is None:
        lines += ["", "Nothing was applied."]
        return "\n".join(lines) + "\n"
    lines += ["", "| outcome | rows |", "|---|---:|"]
    for name in ("planned", "applied", "already_done", "held", "drifted", "failed", "verified", "unverified"):
        lines.append(f"| {name} | {getattr(report, name)} |")
    problems = [r for r in report.rows if r.outcome in ("drifted", "failed") or r.verified is False]
    if problems:
        lines += ["", "| user | action | outcome | detail |", "|---|---|---|---|"]
        lines += [
            f"| {_md_cell(r.key)} | {r.action} | {r.outcome} | {_md_cell(r.detail or '')} |"
            for r in problems[:TABLE_CAP]
        ]
    return "\n".join(lines) + "\n"


def summary_line(summary: dict[str, Any]) -> str:
    """One line of counts, for logs and the console."""
    return (
        ", ".join(f"{a} {int(summary.get(a, 0))}" for a in _COUNT_ORDER)
        + f"; guardrails {json.dumps(summary.get('guardrails', {}).get('verdict'))}"
    )
