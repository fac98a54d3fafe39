"""``scimflow plan``, ``scimflow explain`` and ``scimflow rules check --config``: the core, run directly.

No Prefect here: these read both systems, validate and plan in this process, so they are quick.

Exit codes (contract): ``plan`` 0 when ``plan.jsonl`` is empty, 2 when it has rows, 1 on error (a source
judged unhealthy included); ``explain`` 0, or 1 on error or an unknown UPN; ``rules check`` 0 pass, 1 fail.

``plan`` prints the diff (:mod:`scimflow.diff`) on stdout, coloured on a terminal and plain when piped, or
with ``--json`` the rows of ``plan.jsonl`` as one JSON array and nothing else; the counts, the guardrails'
verdict, the plan hash and where the files are go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scimflow.errors import ScimflowError
from scimflow.vocab import COUNT_KEYS

__all__ = ["TERMINAL_LIMIT", "print_diff", "print_plan_summary", "rules_check", "run_explain", "run_plan"]

#: Users shown per section of the diff on a terminal when no ``--limit`` is given (piped: all of them).
TERMINAL_LIMIT = 50

#: What these verbs report as ``error: ...`` with exit 1 (a file that cannot be read or written included).
_ERRORS: tuple[type[Exception], ...] = (ScimflowError, OSError)
#: ``plan`` also reports a plan file it cannot read back for the diff (``ValueError``: not JSON).
_PLAN_ERRORS: tuple[type[Exception], ...] = (*_ERRORS, ValueError)


def print_plan_summary(summary: dict[str, Any], out: Path, console: Console) -> None:
    """Print the counts, the guardrail verdict and where the plan files are."""
    table = Table(title=f"plan {str(summary.get('plan_hash', ''))[:12]}", show_edge=False)
    table.add_column("action")
    table.add_column("users", justify="right")
    for a in COUNT_KEYS:
        table.add_row(a, str(summary.get(a, 0)))
    if "pending_retire" in summary:  # a grace period is configured: leavers waiting for their date
        table.add_row("pending retirement", str(summary["pending_retire"]))
    console.print(table)
    if summary.get("pending_retire"):
        console.print(f"users pending retirement, with their dates: {escape(str(out / 'pending.jsonl'))}")
    g = summary.get("guardrails", {})
    console.print(
        f"guardrails: {g.get('verdict')}" + (f" (held: {', '.join(g.get('held', []))})" if g.get("held") else "")
    )
    for reason in g.get("reasons") or []:
        console.print(f"  - {escape(str(reason))}")
    console.print(f"plan files: {escape(str(out))}")
    from scimflow.plan import cost_text, read_cost

    if (cost := read_cost(out)) is not None:  # cost.json: the apply's requests per endpoint, expected duration
        for line in cost_text(cost).splitlines():
            console.print(escape(line))


def print_diff(out: Path, console: Console, limit: int | None) -> list[dict[str, Any]]:
    """Print the diff of ``out/plan.jsonl`` on ``console`` and return its rows.

    ``limit``: users shown per section; ``None`` means :data:`TERMINAL_LIMIT` on a terminal and all when
    the output is not one; ``0`` means all.
    """
    from scimflow.diff import diff_lines, read_plan_rows

    rows = read_plan_rows(out)
    if limit is None:
        limit = TERMINAL_LIMIT if console.is_terminal else 0
    for line in diff_lines(rows, limit=limit or None):
        console.print(line)
    return rows


class _DiffConsole(Console):
    """The diff's console: a reader that stops reading (``scimflow plan | head``) ends the diff quietly, and
    the verb keeps its exit code (rich's default exits 1, which means an error here)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that nothing more (nor the interpreter's final flush) hits the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def run_plan(
    config: Path,
    rules: Path | None,
    out: Path | None,
    full: bool,
    *,
    as_json: bool = False,
    limit: int | None = None,
) -> int:
    """Extract, validate, plan and write the plan files, then print the diff (or ``--json`` the rows);
    0 empty, 2 rows, 1 error or unhealthy source."""
    from scimflow import pipeline
    from scimflow.config import load_config

    console = _DiffConsole(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    _quiet_logging()
    try:
        cfg = load_config(config)
        target = Path(out) if out is not None else Path(cfg.out_dir)
        outcome, _, _ = pipeline.run_plan_stages(cfg, rules=rules, out=target, full=full)
        try:
            if as_json:
                from scimflow.diff import read_plan_rows

                sys.stdout.write(json.dumps(read_plan_rows(outcome.out), indent=2) + "\n")
                sys.stdout.flush()
            else:
                print_diff(outcome.out, console, limit)
        except BrokenPipeError:  # `scimflow plan | head`: the reader has seen enough; the plan is written
            _stdout_to_devnull()
    except _PLAN_ERRORS as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    print_plan_summary(outcome.summary, outcome.out, err)
    if outcome.row_count and outcome.verdict_name != "source_unhealthy":
        where = f"{outcome.out} --config {config}"
        err.print(f"apply it with: scimflow apply {escape(where)} (shows this plan's hash to confirm)")
    if outcome.verdict_name == "source_unhealthy":
        reasons = "; ".join(outcome.summary.get("guardrails", {}).get("reasons", [])) or "see summary.json"
        err.print(f"[red]source judged unhealthy:[/red] {escape(reasons)}; nothing may be applied")
        return 1
    return 2 if outcome.row_count else 0


def _explain_rules(cfg: Any, rule_set: Any, entra_row: pl.DataFrame, ref: Any, console: Console) -> None:
    """Evaluate the rules for one Entra user and print them rule by rule."""
    from scimflow.rules import compile_rules

    compiled = compile_rules(rule_set, entra_row.schema)
    evaluated = compiled.evaluate(entra_row.lazy(), ref=ref).collect().row(0, named=True)
    fired = set(evaluated.get("rules") or [])
    explain = json.loads(evaluated.get("explain") or "{}")
    set_by: dict[str, Any] = explain.get("set_by") or {}
    table = Table(title="rules, in file order", show_edge=False)
    table.add_column("rule")
    table.add_column("matched")
    table.add_column("sets")
    table.add_column("wins")
    for rule in rule_set.rules:
        name = rule.name
        matched = "disabled" if not rule.enabled else ("yes" if name in fired else "no")
        sets = ", ".join(f"{k}={v.value!s} ({v.scope})" for k, v in rule.set_.items())
        wins = ", ".join(e for e, by in set_by.items() if by == name or (isinstance(by, list) and name in by))
        table.add_row(name, matched, sets, wins)
    console.print(table)
    if not evaluated.get("in_scope"):
        console.print("no enabled rule matches (or the account is disabled): the user is out of scope")


def run_explain(config: Path, rules: Path | None, upn: str) -> int:
    """Print why ``upn`` gets what it gets: rule by rule, then the planned action and changes."""
    from scimflow import pipeline
    from scimflow.config import load_config

    console = Console(highlight=False, soft_wrap=True)
    _quiet_logging()
    key = upn.strip().lower()
    try:
        cfg = load_config(config)
        rule_set = pipeline.load_rule_set(cfg, rules)
        with tempfile.TemporaryDirectory(prefix="scimflow-explain-") as tmp:
            outcome, entra, so = pipeline.run_plan_stages(cfg, rules=rules, out=Path(tmp), user=upn, record=False)
        row = entra.frame.filter(pl.col("userPrincipalName").str.strip_chars().str.to_lowercase() == key)
        console.print(f"[bold]{upn}[/bold]")
        if row.height:
            r = row.row(0, named=True)
            console.print(
                f"Entra: id {r['id']}, enabled {r['accountEnabled']}, groups: {', '.join(r['groups'] or []) or '—'}"
            )
            ref = so.reference if isinstance(so, pipeline.SuperOfficeExtract) else None  # SCIM: names unresolved
            _explain_rules(cfg, rule_set, row, ref, console)
        else:
            console.print("not in Entra ID (gone, or never there)")
        plan_rows = outcome.plan.rows
        if plan_rows.height == 0:
            console.print("plan: [green]unchanged[/green] (nothing to do)" if row.height else "plan: nothing")
            return 0 if row.height else 1
        for p in plan_rows.iter_rows(named=True):
            console.print(f"plan: [bold]{p['action']}[/bold] (SuperOffice user {p['associate_id']})")
            if p.get("reason"):
                console.print(f"  reason: {p['reason']}")
            for f, c in sorted(json.loads(p["changes"] or "{}").items()):
                console.print(f"  {f}: {c.get('from')!r} → {c.get('to')!r}")
            explain = json.loads(p.get("explain") or "{}")
            if explain.get("matched_by"):
                console.print(f"  matched by: {explain['matched_by']}")
    except _ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


def rules_check(path: Path, config: Path | None) -> int:
    """Load and compile a rule set; with a config, resolve its names against the tenant's lists. 0/1."""
    from scimflow.commands import rules_cmd

    if config is None:
        return int(rules_cmd.check(path))
    from scimflow import pipeline
    from scimflow.config import load_config

    console = Console(highlight=False, soft_wrap=True)
    try:
        reference = pipeline.extract_superoffice(load_config(config)).reference
    except _ERRORS as exc:
        console.print(f"[red]error:[/red] cannot read the tenant's reference lists: {exc}")
        return 1
    return int(rules_cmd.check(path, reference=reference))
