"""Pure functions that render a plan and an apply report for people: preview markdown, table rows, report.

They read only the plan's rows (as in ``plan.jsonl``) and ``summary.json``, so what an approver sees is
exactly what will be applied. The Prefect layer publishes their output as artifacts; nothing here does I/O.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scimflow.plan import pending_section
from scimflow.rules_diff import rules_change_lines
from scimflow.vocab import COUNT_KEYS, GROUP_ACTIONS, GROUP_COUNT_KEYS, ROW_ACTIONS

if TYPE_CHECKING:
    from scimflow.apply import ApplyReport, PlanRow
    from scimflow.preview_risk import PlanPages

__all__ = [
    "TABLE_CAP",
    "approval_description",
    "artifact_keys",
    "changes_table",
    "latest_pointer",
    "md_code",
    "md_text",
    "preview_markdown",
    "refused_note",
    "report_markdown",
    "risk_order",
    "rule_hits",
]

#: Rows shown in the changes table; the full plan is in the plan files.
TABLE_CAP = 200

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


#: Characters that would end a table row or a line (a heading, a list) or hide text: shown as a space.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b\u200e\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
#: Every ASCII punctuation character: CommonMark lets each be backslash-escaped to stand for itself.
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def md_text(value: object) -> str:
    """``value`` (directory data, names, error text) as literal Markdown text, safe in a table cell.

    Every ASCII punctuation character is backslash-escaped, so no link, image, autolink (``://``, ``www.``,
    ``@``), HTML tag or entity, emphasis, code span, heading, list or table pipe can come out of the data;
    line breaks, control and bidi-override characters become spaces. The rendered text reads as the value.
    """
    return _PUNCT.sub(r"\\\1", _BREAKING.sub(" ", str(value)))


def md_code(value: object) -> str:
    """``value`` as one inline code span (rendered verbatim), whatever backticks it holds; not for table cells."""
    text = _BREAKING.sub(" ", str(value))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def changes_table(rows: Sequence[PlanRow], cap: int = TABLE_CAP) -> list[dict[str, Any]]:
    """The rows for the changes table artifact, riskiest first, at most ``cap`` of them."""
    ordered = sorted(rows, key=risk_order)[:cap]
    return [
        {
            "action": md_text(r.action),
            "key": md_text(r.key),
            "associate_id": r.associate_id,
            "changes": md_text(_change_text(r)),
            "rules": md_text(", ".join(r.rules)),
            "reason": md_text(r.reason or ""),
        }
        for r in ordered
    ]


def _guardrail_lines(summary: dict[str, Any]) -> list[str]:
    g = summary.get("guardrails") or {}
    verdict = g.get("verdict", "ok")
    held = f" — held classes: {md_text(', '.join(g['held']))}" if g.get("held") else ""
    lines = [f"**Guardrails:** {md_code(verdict)}" + held]
    lines += [f"- {md_text(r)}" for r in g.get("reasons") or []]
    return lines


def preview_markdown(
    summary: dict[str, Any],
    rows: Sequence[PlanRow],
    *,
    plan_dir: Path | str,
    title: str = "scimflow sync preview",
    top: int = 15,
    stored: str | None = None,
    pages: PlanPages | None = None,
) -> str:
    """The preview: plan hash, where the whole plan is (``stored`` files, table ``pages``), guardrail verdict,
    who is affected (:mod:`scimflow.preview_risk`), counts per action, rule hits and the riskiest changes."""
    from scimflow import preview_risk  # it renders with this module's helpers
    from scimflow.plan import cost_lines

    plan_file = str(Path(plan_dir) / "plan.jsonl")
    lines = [
        f"# {title}",
        "",
        f"**Plan hash:** {md_code(summary.get('plan_hash', ''))}  ",
        f"**Plan files:** {md_code(plan_dir)}  ",
        *preview_risk.pages_lines(pages or preview_risk.PlanPages((), 0, 0), stored=stored, plan_file=plan_file),
        "",
    ]
    lines += _guardrail_lines(summary)
    lines += preview_risk.affected_lines(rows, pages=pages, plan_file=plan_file)  # who, above the fold
    lines += cost_lines(plan_dir)  # the apply's requests and expected duration (cost.json, scimflow/plan/_cost.py)
    lines += rules_change_lines(plan_dir)  # the rules changed since the last applied run: say so
    lines += pending_section(summary, plan_dir)  # a grace period's pending retirements (plan/_grace.py)
    lines += ["", "| action | count |", "|---|---:|"]
    lines += [f"| {a} | {int(summary.get(a, 0))} |" for a in COUNT_KEYS]
    lines += [f"| {a} | {int(summary[a])} |" for a in GROUP_COUNT_KEYS if a in summary]  # a SCIM target's
    groups = [r for r in rows if r.action in GROUP_ACTIONS]
    rows = [r for r in rows if r.action not in GROUP_ACTIONS]
    hits = rule_hits(rows)
    if hits:
        lines += ["", "**Rule hits** (planned rows):", "", "| rule | rows |", "|---|---:|"]
        lines += [f"| {md_text(name)} | {n} |" for name, n in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))]
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
            lines.append(f"| {md_text(r.action)} | {md_text(r.key)} | {md_text(what)} |")
    if groups:
        lines += _group_lines(groups, top)
    if len(rows) > top or len(groups) > top:
        total = len(rows) + len(groups)
        lines += ["", f"The full plan ({total} rows) is in {md_code(Path(plan_dir) / 'plan.jsonl')}."]
    return "\n".join(lines) + "\n"


def _group_lines(groups: Sequence[PlanRow], top: int) -> list[str]:
    """A SCIM target's computed groups: which are created, how many members each gains and loses (a few
    named; every key is in plan.jsonl)."""
    lines = [
        "",
        f"**Computed groups** ({len(groups)}; the gateway's rules read their memberships):",
        "",
        "| group | action | members added | members removed |",
        "|---|---|---|---|",
    ]
    for g in sorted(groups, key=lambda r: r.key)[:top]:
        cells = []
        for field, side in (("members_added", "to"), ("members_removed", "from")):
            keys = list(g.changes.get(field, {}).get(side) or [])
            named = ", ".join(md_text(k) for k in keys[:3]) + (f" … (+{len(keys) - 3})" if len(keys) > 3 else "")
            cells.append(f"{len(keys)}" + (f": {named}" if keys else ""))
        action = "create" if g.action == "create_group" else "update"
        lines.append(f"| {md_text(g.key)} | {action} | {cells[0]} | {cells[1]} |")
    return lines


def approval_description(
    summary: dict[str, Any], *, plan_dir: Path | str, preview_key: str, stored: str | None = None
) -> str:
    """The approval form's description: the counts, the verdict, the plan hash it binds to and where the
    plan is (the preview, the plan files, their ``stored`` copy)."""
    counts = ", ".join(f"{a} {int(summary.get(a, 0))}" for a in ROW_ACTIONS)
    if "create_group" in summary:
        counts += "; groups: " + ", ".join(f"{a} {int(summary.get(a, 0))}" for a in GROUP_COUNT_KEYS)
    lines = [
        "## Approve this plan?",
        "",
        f"**Plan hash:** {md_code(summary.get('plan_hash', ''))} (the approval applies to exactly this plan)",
        "",
        f"**Rows:** {counts}",
        "",
        *_guardrail_lines(summary),
        "",
        f"Preview: artifact {md_code(preview_key)}; plan files: {md_code(plan_dir)}"
        + (f", stored at {md_code(stored)}." if stored else "."),
        "",
        "Set **approve** and enter your name as **approver** to apply; **plan_hash** must stay the hash above.",
        "`hold_actions` (classes) and `hold_users` (user keys as in the preview) are left out.",
        *_over_budget_lines(summary),
    ]
    return "\n".join(lines)


def _over_budget_lines(summary: dict[str, Any]) -> list[str]:
    held = [str(c) for c in (summary.get("guardrails") or {}).get("held") or []]
    if not held:
        return []
    names = ", ".join(md_code(c) for c in held)
    return [
        "",
        f"**Held over budget:** {names}. They stay held unless you list them in **release_held**"
        " (an empty `hold_actions` releases nothing).",
    ]


def refused_note(errors: Sequence[str], *, attempt: int, attempts: int) -> str:
    """The block put above the form's description when its last answer was refused (nothing applied)."""
    lines = [f"### Your last answer was refused: nothing was applied (attempt {attempt} of {attempts})", ""]
    lines += [f"- {md_text(e)}" for e in errors]
    return "\n".join([*lines, "", ""])


def artifact_keys(tenant_key: str, flow_run_id: str | None) -> dict[str, str]:
    """The artifact keys of one run: its own (``{tenant}-preview-{run}``: the run id's first 12 hex digits,
    or a random id outside a flow run) and the tenant's "latest" pointers (``{tenant}-sync-preview``)."""
    run = re.sub(r"[^0-9a-f]", "", (flow_run_id or uuid.uuid4().hex).lower())[:12] or uuid.uuid4().hex[:12]
    return {
        "preview": f"{tenant_key}-preview-{run}",
        "changes": f"{tenant_key}-changes-{run}",
        "report": f"{tenant_key}-report-{run}",
        "progress": f"{tenant_key}-progress-{run}",
        "plan": f"{tenant_key}-plan-{run}",  # the whole plan's table pages: {plan}-1, {plan}-2, ...
        "latest_preview": f"{tenant_key}-sync-preview",
        "latest_report": f"{tenant_key}-sync-report",
    }


def latest_pointer(kind: str, key: str, *, plan_hash: str, status: str | None = None) -> str:
    """The tenant's "latest" artifact: which run's ``kind`` (preview or report) is the newest, by its key."""
    lines = [
        f"# Latest scimflow sync {md_text(kind)}",
        "",
        f"The newest {md_text(kind)} of this tenant is artifact {md_code(key)} (plan {md_code(plan_hash[:12])}"
        + (f", status {md_code(status)}" if status else "")
        + ").",
        "",
        "Approve from the paused run's own preview: another run of this tenant may have started since.",
    ]
    return "\n".join(lines) + "\n"


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
    lines = ["# scimflow sync report", "", f"**Status:** {md_code(status)}  ", f"**Plan hash:** {md_code(plan_hash)}  "]
    if approver:
        lines.append(f"**Approved by:** {md_text(approver)}" + (f" — {md_text(comment)}" if comment else "") + "  ")
    if plan_dir:
        lines.append(f"**Plan files:** {md_code(plan_dir)}")
    if held_by:
        for why, items in held_by.items():
            if items:
                lines.append(f"- held ({md_text(why)}): {md_text(', '.join(items))}")
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
            f"| {md_text(r.key)} | {md_text(r.action)} | {md_text(r.outcome)} | {md_text(r.detail or '')} |"
            for r in problems[:TABLE_CAP]
        ]
    return "\n".join(lines) + "\n"


def summary_line(summary: dict[str, Any]) -> str:
    """One line of counts, for logs and the console."""
    return (
        ", ".join(f"{a} {int(summary.get(a, 0))}" for a in COUNT_KEYS)
        + f"; guardrails {json.dumps(summary.get('guardrails', {}).get('verdict'))}"
    )
