"""``scimflow plan`` from fixture files (no connectors): the offline planning path.

The live ``scimflow plan --config`` path (connectors, state store) is wired by the CLI owner around
:func:`scimflow.plan.build_plan`; this one plans straight from G.json / S.json files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console

from scimflow.config import Guardrails
from scimflow.errors import ScimflowError
from scimflow.plan import Plan, build_plan, evaluate_guardrails, frames_from_fixtures, write_plan_files
from scimflow.rules import load_rules

__all__ = ["print_summary", "run_plan_offline"]

EXIT_EMPTY, EXIT_ERROR, EXIT_ROWS = 0, 1, 2


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object"
        raise ValueError(msg)
    return data


def print_summary(plan: Plan, console: Console, *, verdict: str, plan_hash: str, out: Path) -> None:
    """A one-screen summary of a plan (counts, guardrail verdict, where the files are)."""
    counts = ", ".join(f"{k} {v}" for k, v in plan.counts.items())
    console.print(f"[bold]plan[/bold]: {counts}")
    console.print(f"guardrails: {verdict}; plan_hash {plan_hash[:16]}…; files in {out}")


def run_plan_offline(
    graph_json: Path,
    so_json: Path,
    rules: Path,
    out: Path,
    links: list[dict[str, Any]] | None = None,
    *,
    guardrails: Guardrails | None = None,
    console: Console | None = None,
) -> int:
    """Plan from fixture files and write the plan files into ``out``.

    Returns the contract's exit code: 0 when plan.jsonl is empty, 2 when it has rows, 1 on error
    (including a source judged unhealthy; the files are still written).
    """
    console = console or Console(stderr=True)
    try:
        ruleset = load_rules(rules)
        entra, so, ref = frames_from_fixtures(_read_json(graph_json), _read_json(so_json))
        link_frame = pl.DataFrame(
            [{"entra_id": str(x["entra_id"]), "associate_id": int(x["associate_id"])} for x in links or []],
            schema={"entra_id": pl.String, "associate_id": pl.Int64},
        )
        plan = build_plan(entra, so, ref, ruleset, link_frame)
        verdict = evaluate_guardrails(plan, guardrails or Guardrails(), entra.height, None)
        plan_hash = write_plan_files(plan, verdict, out)
    except ScimflowError as exc:  # a rule, schema or config problem: its message says where
        console.print(f"[red]error[/red]: {exc}", markup=True, highlight=False)
        return EXIT_ERROR
    except (OSError, ValueError, KeyError, TypeError) as exc:
        console.print(f"[red]error[/red]: {type(exc).__name__}: {exc}", highlight=False)
        return EXIT_ERROR
    print_summary(plan, console, verdict=verdict.verdict, plan_hash=plan_hash, out=out)
    for reason in verdict.reasons:
        console.print(f"  {reason}", highlight=False)
    if verdict.verdict == "source_unhealthy":
        return EXIT_ERROR
    return EXIT_ROWS if plan.rows.height else EXIT_EMPTY
