"""``scimflow rules check`` and ``scimflow rules test``: plain functions returning exit codes (0 pass, 1 fail)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from scimflow.frames import Reference
from scimflow.rules import RuleError, compile_rules, load_rules, run_rule_tests

__all__ = ["check", "test"]

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
