"""Run the ``sync-users`` flow once, in this process: ``python -m flows.run --config CFG [...]``.

``scimflow sync`` and ``scimflow demo`` start this module in a child process against ``PREFECT_API_URL``.
It runs the flow (``prefect-secret:`` references are read by :mod:`tasks.prefect_secrets`), prints the summary
and where the artifacts and plan files are, and exits with the ``scimflow sync`` contract's code:
0 every planned change applied (or nothing to do), 3 some not applied (rejected, held, drifted, timed
out), 1 on error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError
from rich.console import Console

from scimflow.errors import ScimflowError
from scimflow.sync_options import add_sync_arguments
from scimflow.sync_params import params_from_namespace
from scimflow.vocab import ROW_ACTIONS

__all__ = ["UsageParser", "main", "print_result"]


class UsageParser(argparse.ArgumentParser):
    """A usage error exits 1, as every scimflow verb does (2 means "rows to look at" in the contract); the
    flows' command lines (this one and ``flows/apply_plan.py``) use it."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    """The sync options (:data:`scimflow.sync_options.SYNC_FLAGS`) and ``--result-json``."""
    p = UsageParser(prog="python -m flows.run", description=__doc__.splitlines()[0])
    add_sync_arguments(p)
    p.add_argument("--result-json", type=Path, default=None, help="also write the run's result as JSON here")
    return p


def print_result(result: object, console: Console) -> None:
    """Print a :class:`~scimflow.apply.SyncResult` for people."""
    from scimflow.apply import SyncResult

    assert isinstance(result, SyncResult)
    c = result.counts
    console.print(f"[bold]sync {result.status}[/bold] (exit {result.exit_code})  plan {result.plan_hash[:12]}")
    console.print(
        "  planned: "
        + ", ".join(f"{a} {c.get(a, 0)}" for a in ROW_ACTIONS)
        + f"; unchanged {c.get('unchanged', 0)}, unmanaged {c.get('unmanaged', 0)}"
    )
    if "create_group" in c:  # a SCIM target's computed groups
        console.print(
            f"  groups: create {c.get('create_group', 0)}, update {c.get('update_group', 0)}; "
            f"members added {c.get('members_added', 0)}, removed {c.get('members_removed', 0)}"
        )
    g = result.guardrails
    console.print(
        f"  guardrails: {g.get('verdict')}" + (f" (held: {', '.join(g.get('held', []))})" if g.get("held") else "")
    )
    for reason in g.get("reasons") or []:
        console.print(f"    - {reason}")
    r = result.report
    if r is not None:
        console.print(
            f"  applied {r.applied}, already done {r.already_done}, held {r.held}, drifted {r.drifted}, "
            f"failed {r.failed}, verified {r.verified}/{r.applied + r.already_done}"
        )
    if result.approver:
        console.print(f"  approval: {result.approver}" + (f" ({result.comment})" if result.comment else ""))
    console.print(f"  plan files: {result.plan_dir}")
    if result.flow_run_id:
        from prefect.settings import PREFECT_UI_URL

        console.print(f"  flow run:   {PREFECT_UI_URL.value()}/runs/flow-run/{result.flow_run_id}")
    console.print("  artifacts:  " + ", ".join(v for k, v in result.artifacts.items() if k != "progress"))


def main(argv: list[str] | None = None) -> int:
    """Run the flow once and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    try:
        params = params_from_namespace(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.error(problems)
    from flows.states import result_of
    from flows.sync import sync_users

    try:
        result = result_of(sync_users(params, return_state=True))
    except ScimflowError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the process boundary: report any failure as exit 1
        console.print(f"[red]sync failed:[/red] {type(exc).__name__}: {exc}")
        return 1
    if args.result_json is not None:
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        args.result_json.write_text(result.model_dump_json(indent=1), encoding="utf-8")
    print_result(result, console)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
