"""The ``apply-saved-plan`` flow: apply a plan folder whose hash the operator already confirmed.

``scimflow apply PLAN_DIR`` starts it (``python -m flows.apply_plan ...`` in a child process) when a Prefect
server is there (``PREFECT_API_URL``); the approval is checked by the CLI before (the flow receives the
confirmed hash and refuses a plan.jsonl whose hash differs: :class:`~scimflow.apply.PlanChangedError`).
Only wiring lives here: the stages are the tasks of ``tasks/apply.py``, one task run per stage or per chunk
of changes, applied and concluded as ``flows/sync.py`` does (``flows/_apply_common.py``); the run is named ``<tenant>-apply-<UTC time>`` and tagged ``tenant:<key>``.
The process exits with the ``scimflow sync`` contract's code: 0 all applied, 3 some not applied, 1 error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from rich.console import Console

from flows._apply_common import TASK_RUNNER, apply_in_chunks, conclude, plain
from flows.labels import name_for, tag_run
from flows.logs import with_core_logs
from flows.run import UsageParser
from flows.states import result_of
from scimflow import pipeline
from scimflow.apply import (
    HELD_WHY,
    Conclusion,
    PlanChangedError,
    SyncResult,
    held_by,
    held_classes_for,
    split_held,
    status_of,
)
from scimflow.commands.apply_cmd import cli_approval, load_saved_plan, print_report, read_links
from scimflow.config import Config, load_config
from scimflow.errors import ScimflowError
from tasks.apply import finish_changes, finish_sync_run, hold_changes, load_approved_plan, record_approval_form
from tasks.preview import ArtifactKeys

__all__ = ["FLOW_NAME", "apply_saved_plan", "main", "run_name"]

#: The flow's name in Prefect.
FLOW_NAME = "apply-saved-plan"


def run_name() -> str:
    """``<tenant>-apply-<UTC date and time>`` (the config's file name when it does not load)."""
    config = str(flow_run.parameters.get("config") or "scimflow.yaml")
    try:
        tenant = load_config(config).tenant_key
    except ScimflowError:
        tenant = Path(config).stem
    return name_for(tenant, "apply", flow_run.scheduled_start_time or datetime.now(UTC))


@task(name="start-apply-run", cache_policy=NO_CACHE)
def start_apply_run(config: Config, plan_hash: str) -> str:
    """Record the run in the state store (mode ``apply``); its id."""
    with pipeline.open_store(config) as store:
        return store.start_run("apply", plan_hash=plan_hash)


@flow(name=FLOW_NAME, flow_run_name=run_name, log_prints=False, task_runner=TASK_RUNNER)
@with_core_logs
def apply_saved_plan(
    config: str,
    plan_dir: str,
    plan_hash: str,
    approver: str,
    comment: str = "",
    hold_actions: list[str] | None = None,
    hold_users: list[str] | None = None,
) -> State[SyncResult]:
    """Apply the plan in ``plan_dir`` whose hash ``plan_hash`` was confirmed by ``approver``."""
    cfg = load_config(config)
    tag_run(cfg)
    keys = ArtifactKeys.for_run(cfg.tenant_key, flow_run.id)
    saved = load_saved_plan(Path(plan_dir))  # PlanChangedError if plan.jsonl no longer has summary.json's hash
    if saved.plan_hash != plan_hash:
        msg = f"{saved.folder}: its plan hash is {saved.plan_hash[:12]}…, not the approved {plan_hash[:12]}…"
        raise PlanChangedError(msg)
    links = read_links(saved.folder, plan_hash)
    approval = cli_approval(hold_actions or [], hold_users or [], comment)
    holds = held_classes_for(approval, saved.over_budget)  # over budget: held, as the direct path holds them
    run_id = start_apply_run(cfg, plan_hash)
    record_approval_form(cfg, run_id, plan_hash, approver, approval.form_values())
    try:
        rows = load_approved_plan(saved.folder, plan_hash)
        go, held = split_held(rows, holds, approval.hold_users)
        results = apply_in_chunks(cfg, plan_hash, go, run_id, keys.progress)
        if held:
            results += hold_changes(cfg, plan_hash, plain(held), HELD_WHY, run_id)
        pairs = links if links is not None else pl.DataFrame(schema={"entra_id": pl.String, "associate_id": pl.String})
        report = finish_changes(cfg, plan_hash, plain(rows), plain(results), pairs, None)
    except BaseException as exc:
        counts = {k: v for k, v in saved.summary.items() if isinstance(v, int)}
        finish_sync_run(cfg, run_id, "failed", {**counts, "status": "failed", "error": type(exc).__name__}, None)
        raise
    end = Conclusion(status_of(report), report, run_id, approver, approval.comment, held_by(held))
    return conclude(
        cfg, keys, end, plan_hash=plan_hash, plan_dir=saved.folder, summary=saved.summary, source_users=None
    )


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="python -m flows.apply_plan", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--plan-dir", required=True)
    p.add_argument("--plan-hash", required=True, help="the confirmed plan hash (all 64 hex characters)")
    p.add_argument("--approver", required=True)
    p.add_argument("--comment", default="")
    p.add_argument("--hold-actions", action="append", default=[])
    p.add_argument("--hold-users", action="append", default=[])
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the flow once; print its report; return the exit code (0 / 3 / 1)."""
    args = _parser().parse_args(argv)
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        state = apply_saved_plan(
            args.config,
            args.plan_dir,
            args.plan_hash,
            args.approver,
            args.comment,
            args.hold_actions,
            args.hold_users,
            return_state=True,
        )
        result = result_of(state)
    except ScimflowError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the process boundary: report any failure as exit 1
        err.print(f"[red]apply failed:[/red] {type(exc).__name__}: {exc}")
        return 1
    if result.report is not None:
        print_report(result.report, out, err, over_budget=list(result.guardrails.get("held", []) or []))
    err.print(f"flow run {result.flow_run_id} ({FLOW_NAME}): {result.status}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
