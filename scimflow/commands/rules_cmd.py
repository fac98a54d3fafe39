"""``scimflow rules check``, ``rules test`` (0 pass, 1 fail) and ``rules diff`` (0 no difference, 2 differences,
1 error): plain functions returning exit codes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scimflow.frames import Reference
from scimflow.rules import RuleError, compile_rules, load_rules, run_rule_tests

if TYPE_CHECKING:
    from scimflow.rules_diff import RulesDiff

__all__ = ["DIFF_TERMINAL_LIMIT", "check", "diff", "print_rules_diff", "test"]

#: Users shown per section of ``rules diff`` on a terminal when no ``--limit`` is given (piped: all of them).
DIFF_TERMINAL_LIMIT = 50

_KINDS = {
    "user_plan": "user plan",
    "role": "role",
    "primary_group": "user group",
    "secondary_groups": "user group",
    "owner_company": "company",
}


def check(path: Path, reference: Reference | None = None, *, console: Console | None = None) -> int:
    """Load and compile a rule file; with ``reference``, also check every element value exists.

    Prints ``ok`` or each problem (file, line, rule); returns 0 when the rule set is usable, else 1.
    """
    console = console or Console()
    try:
        ruleset = load_rules(path)
        compile_rules(ruleset)
    except RuleError as exc:
        console.print(f"[red]✗[/red] {exc}", highlight=False)
        return 1
    problems = []
    if reference is not None:
        for i, rule in enumerate(ruleset.rules):
            for element, setting in rule.set_.items():
                if element not in _KINDS:
                    continue
                known = reference.names(element)
                values = setting.value if isinstance(setting.value, list) else [setting.value]
                for value in values:
                    if value not in known:
                        line = ruleset.line_of(("rules", i, "set", element))
                        problems.append(
                            RuleError(
                                f"{element} '{value}' is not a {_KINDS[element]} in SuperOffice",
                                file=ruleset.source,
                                line=line,
                                rule=rule.name,
                            )
                        )
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}", highlight=False)
    if problems:
        return 1
    enabled = sum(r.enabled for r in ruleset.rules)
    console.print(
        f"[green]ok[/green] {path}: {len(ruleset.rules)} rules ({enabled} enabled), {len(ruleset.tests)} tests",
        highlight=False,
    )
    return 0


def test(path: Path, *, console: Console | None = None) -> int:  # noqa: PT028 - a CLI verb, not a pytest test
    """Run the rule file's ``tests:`` block; print each result; 0 when all pass (or none exist), else 1."""
    console = console or Console()
    try:
        ruleset = load_rules(path)
        outcomes = run_rule_tests(ruleset, compile_rules(ruleset))
    except RuleError as exc:
        console.print(f"[red]✗[/red] {exc}", highlight=False)
        return 1
    for o in outcomes:
        where = f"{ruleset.source}:{o.line}" if o.line else str(ruleset.source)
        if o.passed:
            console.print(f"[green]✓[/green] {o.name}", highlight=False)
        else:
            console.print(f"[red]✗[/red] {o.name} ({where})", highlight=False)
            for p in o.problems:
                console.print(f"    {p}", highlight=False)
    failed = sum(not o.passed for o in outcomes)
    console.print(f"{len(outcomes) - failed} passed, {failed} failed", highlight=False)
    return 1 if failed else 0


# --- rules diff ----------------------------------------------------------------------------------

_SECTIONS = {
    "enters": "enter scope",
    "leaves": "leave scope",
    "values": "resolved values change",
}
_AFTER = {"create": "created", "retire": "retired", "reactivate": "reactivated", "update": "updated"}


def _outcome(action: str) -> str:
    if action in _AFTER:
        return _AFTER[action]
    if action in ("quarantine", "conflict"):
        return f"{action} (not written)"
    return "nothing written" if action in ("unchanged", "out_of_scope") else action


def print_rules_diff(d: RulesDiff, console: Console, *, old: str, new: str, limit: int | None) -> None:
    """The difference as tables: users entering and leaving scope (and what follows under NEW), then every
    changed resolved value (user, field, under OLD, under NEW). ``limit`` users per table (``None``: all)."""
    from scimflow.diff import render_value, safe_text

    c = d.counts
    console.print(
        f"rules diff {safe_text(old)} ({d.old_hash[:12]}) → {safe_text(new)} ({d.new_hash[:12]}): "
        f"{c['users']} of {d.evaluated} users differ: {c['enters']} enter scope, {c['leaves']} leave scope, "
        f"{c['values']} change values; {c['create']} would be created, {c['retire']} retired",
        markup=False,
    )
    for kind, heading in _SECTIONS.items():
        rows = d.users.filter(d.users.get_column("kind") == kind)
        if rows.is_empty():
            continue
        shown = rows if limit is None else rows.head(limit)
        table = Table(title=f"{heading} ({rows.height})", show_edge=False, title_justify="left")
        if not console.is_terminal:  # piped: plain columns, one line per value, nothing folded
            table.box = None
        for col in ("user", "under OLD", "under NEW", "field", "OLD value", "NEW value"):
            table.add_column(col, overflow="fold")
        for r in shown.iter_rows(named=True):
            changes: dict[str, Any] = json.loads(r["changes"])
            user = safe_text(r["key"]) + (f" #{safe_text(r['associate_id'])}" if r["associate_id"] else "")
            actions = (_outcome(r["action_old"]), _outcome(r["action_new"]))
            if not changes:
                table.add_row(escape(user), *actions, "", "", escape(safe_text(r["reason"] or "")))
            for i, (field, v) in enumerate(sorted(changes.items())):
                head = (escape(user), *actions) if i == 0 else ("", "", "")
                table.add_row(*head, field, escape(render_value(v["from"])), escape(render_value(v["to"])))
        console.print(table)
        if shown.height < rows.height:
            console.print(f"… and {rows.height - shown.height} more (--limit 0 or --json for all)", markup=False)


def diff(
    old: Path,
    new: Path,
    *,
    config: Path,
    as_json: bool = False,
    limit: int | None = None,
    console: Console | None = None,
) -> int:
    """``scimflow rules diff OLD NEW --config CFG``: what changing the rules from OLD to NEW does to today's
    tenant. Nothing is written. Exit 0 when no user differs, 2 when some do, 1 on error (a bad rule file names
    the file and line)."""
    from scimflow.config import load_config
    from scimflow.errors import ScimflowError
    from scimflow.rules_diff import diff_rules_live

    if console is None:
        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal:
            console = Console(highlight=False, soft_wrap=True, width=100_000)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config)
        d = diff_rules_live(cfg, old, new)
    except (ScimflowError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    try:
        if as_json:
            sys.stdout.write(d.to_json(old=str(old), new=str(new)) + "\n")
            sys.stdout.flush()
        else:
            shown = limit if limit is not None else (DIFF_TERMINAL_LIMIT if console.is_terminal else 0)
            print_rules_diff(d, console, old=str(old), new=str(new), limit=shown or None)
    except BrokenPipeError:
        pass
    return 2 if d.differs else 0
