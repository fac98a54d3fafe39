"""``scimflow doctor --config CFG``: run :mod:`scimflow.doctor`'s checks and print them as a table.

Exit 0 when every check passes (warnings allowed), 1 otherwise.

``prefect-secret:`` references are read through ``PREFECT_API_URL`` by the config's own resolver
(:mod:`tasks.prefect_secrets`), as ``scimflow plan`` reads them; Prefect is never imported.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from scimflow.doctor import Check, run_checks

__all__ = ["print_checks", "run_doctor"]

_STYLE = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("–", "dim")}


def print_checks(checks: list[Check], console: Console) -> None:
    """One row per check: status, name, what was found, and the fix when there is one."""
    table = Table(show_edge=False, show_lines=False, header_style="bold")
    table.add_column("", width=1)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    table.add_column("fix")
    for c in checks:
        mark, style = _STYLE[c.status]
        table.add_row(f"[{style}]{mark}[/{style}]", c.name, c.detail, c.fix or "")
    console.print(table)
    failed = sum(1 for c in checks if c.status == "fail")
    warned = sum(1 for c in checks if c.status == "warn")
    if failed:
        console.print(f"[red]{failed} check(s) failed[/red]" + (f", {warned} warning(s)" if warned else ""))
    else:
        console.print("[green]all checks passed[/green]" + (f" ({warned} warning(s))" if warned else ""))


def run_doctor(config: Path) -> int:
    """Check connectivity, TLS, clock, certificates, credentials and permissions; 0 all pass, 1 otherwise."""
    checks = run_checks(config)
    print_checks(checks, Console(highlight=False, width=200 if not Console().is_terminal else None))
    return 0 if all(c.ok for c in checks) else 1
