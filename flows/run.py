"""Run the ``sync-users`` flow once, in this process: ``python -m flows.run --config CFG [...]``.

``scimflow sync`` and ``scimflow demo`` start this module in a child process against ``PREFECT_API_URL``.
It registers the ``prefect-secret:`` resolver (Prefect Secret blocks), runs the flow, prints the summary
and where the artifacts and plan files are, and exits with the ``scimflow sync`` contract's code:
0 every planned change applied (or nothing to do), 3 some not applied (rejected, held, drifted, timed
out), 1 on error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

__all__ = ["main", "print_result"]


def _prefect_secret(name: str) -> str:
    from prefect.blocks.system import Secret

    block = Secret.load(name)
    assert isinstance(block, Secret)  # the sync API (no event loop here)
    return str(block.get())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flows.run", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="scimflow.yaml", help="the scimflow.yaml to use")
    p.add_argument("--rules", default=None, help="a rule set overriding the config's")
    p.add_argument("--approve", action="store_true", help="approve on the command line (recorded as such)")
    p.add_argument("--user", default=None, help="sync one user (UPN) only")
    p.add_argument("--mode", choices=["preview", "approve", "auto"], default="approve")
    p.add_argument("--timeout", type=int, default=3600, help="seconds to wait for approval")
    p.add_argument("--no-wait-for-held", action="store_true", help="auto mode: end with over-budget classes held")
    p.add_argument("--full", action="store_true", help="read all Entra users even when a delta link is stored")
    p.add_argument("--poll-interval", type=int, default=2, help="seconds between approval checks while paused")
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
        + ", ".join(
            f"{a} {c.get(a, 0)}" for a in ("create", "update", "retire", "reactivate", "quarantine", "conflict")
        )
        + f"; unchanged {c.get('unchanged', 0)}, unmanaged {c.get('unmanaged', 0)}"
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
    args = _parser().parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    from scimflow.config import ConfigError, register_secret_resolver

    register_secret_resolver("prefect-secret", _prefect_secret)
    from flows.sync import SyncParams, sync_users

    params = SyncParams(
        config=str(Path(args.config).resolve()),
        rules=str(Path(args.rules).resolve()) if args.rules else None,
        mode=args.mode,
        user=args.user,
        approval_timeout=args.timeout,
        cli_approved=args.approve,
        wait_for_held=not args.no_wait_for_held,
        full=args.full,
        poll_interval=args.poll_interval,
    )
    try:
        result = sync_users(params)
    except ConfigError as exc:
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
