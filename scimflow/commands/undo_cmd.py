"""``scimflow undo RUN_OR_PLAN_HASH``: write the inverse plan of an applied plan, from the journal.

Nothing is written to the target: the inverse plan is ordinary plan files (``--out``, by default
``<out_dir>/<UTC time>-undo-<hash>``), applied only through the same approval as any plan:
``scimflow apply DIR`` (the hash confirmed on a terminal) or ``scimflow apply DIR --approve HASH``.
The diff goes to stdout (as ``scimflow plan``'s: users held as drifted are listed as conflicts, not
applied); the counts, the guardrails' verdict, the plan hash and the folder to stderr.

Exit codes as ``scimflow plan``: 0 nothing to undo (``plan.jsonl`` empty), 2 rows, 1 error (an unknown or
ambiguous run or plan, plan files not found, a config of another target).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from scimflow.errors import ScimflowError

__all__ = ["run_undo"]

_ERRORS: tuple[type[Exception], ...] = (ScimflowError, OSError, ValueError)


def run_undo(
    ref: str,
    *,
    config: Path,
    out: Path | None = None,
    plans: Sequence[Path] = (),
    limit: int | None = None,
    as_json: bool = False,
) -> int:
    """Write the inverse plan of the plan ``ref`` names and print it; 0 nothing to undo, 2 rows, 1 error."""
    from scimflow import pipeline
    from scimflow.commands.plan_live import print_diff, print_plan_summary
    from scimflow.config import load_config
    from scimflow.undo import build_undo

    console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config)
        with pipeline.open_store(cfg) as store:
            result = build_undo(cfg, store, ref, out=out, plans=plans)
        if as_json:
            from scimflow.diff import read_plan_rows

            sys.stdout.write(json.dumps(read_plan_rows(result.out), indent=2) + "\n")
        elif result.row_count:
            print_diff(result.out, console, limit)
        else:
            console.print("Nothing to undo.")
    except _ERRORS as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    runs = f" (run {', '.join(result.runs)})" if result.runs else ""
    err.print(f"undo of plan {result.undone}{runs}")
    if result.source is not None:
        err.print(f"  its plan files: {escape(str(result.source))}")
    for h in result.held:
        why = f"changed since the run: {', '.join(h.fields)}" if h.why == "drifted" else h.why
        err.print(escape(f"  held ({h.why}), not reversed: {h.key} ({h.action}; {why})"))
    if result.already:
        err.print(f"  already as before the run (nothing to do): {len(result.already)}")
    for status, n in sorted(result.not_applied.items()):
        err.print(f"  not reversed, as the run did not apply them ({status}): {n}")
    print_plan_summary(result.summary, result.out, err)
    if result.change_count:
        where = f"{result.out} --config {config}"
        err.print(f"apply it with: scimflow apply {escape(where)} (shows this plan's hash to confirm)")
    return 2 if result.row_count else 0
