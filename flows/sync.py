"""The ``sync-users`` flow: extract, validate, plan, preview, approve, apply, report.

Only wiring lives here; every decision and format is a plain function in ``scimflow`` (pipeline, apply,
preview) and every stage is a task in ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field

from scimflow.apply import (
    LOOKAHEAD,
    ApplyReport,
    PlanRow,
    RowResult,
    SyncResult,
    chunk_rows,
    plan_file_hash,
    split_held,
    status_of,
)
from scimflow.config import Config, load_config
from scimflow.pipeline import PlanOutcome, new_plan_dir
from tasks.apply import (
    apply_changes,
    finish_changes,
    finish_sync_run,
    hold_changes,
    load_approved_plan,
    record_approval_form,
    release_apply_session,
)
from tasks.extract import extract_entra_users, extract_superoffice_users
from tasks.plan import plan_changes, start_sync_run
from tasks.preview import ArtifactKeys, publish_preview, publish_report
from tasks.validate import validate_users

__all__ = ["LOOKAHEAD", "ApplyApproval", "SyncParams", "sync_users"]

_T = TypeVar("_T")


class SyncParams(BaseModel):
    """Parameters of one sync run (a form in the Prefect UI)."""

    config: str = Field("scimflow.yaml", description="Path of the scimflow.yaml to use")
    rules: str | None = Field(None, description="A rule set overriding the config's `rules`")
    mode: Literal["preview", "approve", "auto"] = Field(
        "approve", description="preview: plan only; approve: pause for the form; auto: apply within the guardrails"
    )
    user: str | None = Field(None, description="Sync only this user (UPN)")
    approval_timeout: int = Field(3600, ge=1, description="Seconds to wait for the approval form; a timeout rejects")
    cli_approved: bool = Field(False, description="Approved on the command line (`scimflow sync --approve`)")
    wait_for_held: bool = Field(
        True, description="auto mode: pause for classes over their guardrail budget (else end with them held)"
    )
    full: bool = Field(False, description="Read all Entra users even when a delta link is stored")
    poll_interval: int = Field(2, ge=1, le=60, description="Seconds between checks for the approval while paused")


class ApplyApproval(RunInput):
    """The approval form. ``hold_actions`` are action classes (e.g. ``retire``), ``hold_users`` UPNs."""

    approve: bool = False
    comment: str = ""
    hold_actions: list[str] = Field(default_factory=list)
    hold_users: list[str] = Field(default_factory=list)


@flow(name="sync-users", log_prints=False)
def sync_users(params: SyncParams) -> SyncResult:
    """Sync Entra ID users into SuperOffice: plan, publish the preview, wait for approval, apply in chunks.

    Approval **pauses** the run (``pause_flow_run``) rather than suspending it: a suspended run exits and
    restarts from the top when resumed, re-running extraction and planning (side effects, and a plan that
    may differ from the one approved). A paused run keeps the planned state in this process, so what is
    applied is exactly the plan whose hash the approver saw. A timeout counts as a rejection.
    """
    config = load_config(params.config)
    keys = ArtifactKeys.for_tenant(config.tenant_key)
    entra = extract_entra_users(config, params.full)
    so = extract_superoffice_users(config)
    checked = validate_users(entra, so)
    rules = Path(params.rules) if params.rules else None
    planned = plan_changes(config, rules, entra, so, checked, new_plan_dir(config), params.user)
    description = publish_preview(planned, keys)
    if params.mode == "preview":
        return _conclude(config, keys, planned, None, None, "preview", None, None, {})
    run_id = start_sync_run(config, params.mode, planned, flow_run.id)
    if planned.verdict_name == "source_unhealthy":
        return _conclude(config, keys, planned, None, run_id, "source_unhealthy", None, None, {})
    if planned.change_rows == 0:  # still record the links, the baseline and the source count
        report = finish_changes(config, planned.plan_hash, [], [], planned.plan.matched_pairs, entra)
        return _conclude(config, keys, planned, report, run_id, status_of(report), None, None, {})
    held_classes = planned.held_classes
    form = _first_approval(params, planned, description, held_classes)
    if form is None or not form.approve:
        status = "timed_out" if form is None else "rejected"
        _record(config, run_id, planned, form, status, params)
        return _conclude(config, keys, planned, None, run_id, status, _approver(params, form), form, {})
    _record(config, run_id, planned, form, "approved", params)
    if plan_file_hash(planned.out) != planned.plan_hash:
        return _conclude(config, keys, planned, None, run_id, "plan_changed", None, form, {})
    rows = load_approved_plan(planned.out, planned.plan_hash)
    holds = set(form.hold_actions) | (set(held_classes) if params.mode == "auto" or params.cli_approved else set())
    go, held = split_held(rows, holds, form.hold_users)
    results = _apply(config, planned, go, run_id, keys)
    if held and params.mode == "auto" and params.wait_for_held and not params.cli_approved and held_classes:
        second = _ask(planned, description, params, initial_holds=[])
        _record(config, run_id, planned, second, "approved" if second and second.approve else "rejected", params)
        if second is not None and second.approve:
            go, held = split_held(
                held, [*second.hold_actions, *form.hold_actions], [*second.hold_users, *form.hold_users]
            )
            results += _apply(config, planned, go, run_id, keys)
    if held:
        why = "held by the approval form or the guardrails"
        results += hold_changes(config, planned.plan_hash, _plain(held), why, run_id)
    report = finish_changes(config, planned.plan_hash, _plain(rows), _plain(results), planned.plan.matched_pairs, entra)
    return _conclude(
        config, keys, planned, report, run_id, status_of(report), _approver(params, form), form, _held_by(held, holds)
    )


# --- wiring helpers (no decisions beyond what the contract states) ---------------------------------


def _plain(value: _T) -> _T:
    """``value`` wrapped in Prefect's ``quote``: a task parameter Prefect does not walk looking for futures.

    Plan rows and results are plain data, thousands of models per run; walking them costs the apply CPU
    it needs for its requests. The task receives ``value`` itself (Prefect unwraps ``quote``), hence the cast.
    """
    return cast(_T, quote(value))


def _ask(planned: PlanOutcome, description: str, params: SyncParams, initial_holds: list[str]) -> ApplyApproval | None:
    """Pause for the approval form; ``None`` when it timed out (which rejects)."""
    logger = get_run_logger()
    url = f"{PREFECT_UI_URL.value()}/runs/flow-run/{flow_run.id}"
    logger.info(
        "waiting for approval of plan %s at %s (timeout %d s)", planned.plan_hash[:12], url, params.approval_timeout
    )
    try:
        return pause_flow_run(
            wait_for_input=ApplyApproval.with_initial_data(description=description, hold_actions=initial_holds),
            timeout=params.approval_timeout,
            poll_interval=params.poll_interval,
        )
    except FlowPauseTimeout:
        logger.warning("no approval within %d s: rejected, nothing applied", params.approval_timeout)
        return None


def _first_approval(
    params: SyncParams, planned: PlanOutcome, description: str, held: list[str]
) -> ApplyApproval | None:
    """The command line's or the guardrails' approval, or the form's (approve mode)."""
    if params.cli_approved:
        return ApplyApproval(approve=True, comment="approved on the command line")
    if params.mode == "auto":
        return ApplyApproval(approve=True, comment="auto: within the guardrails")
    return _ask(planned, description, params, initial_holds=held)


def _approver(params: SyncParams, form: ApplyApproval | None) -> str:
    if form is None:
        return "timeout"
    if params.cli_approved:
        return "cli"
    if params.mode == "auto" and form.comment.startswith("auto:"):
        return "auto"
    return "unknown (Prefect UI or API)"


def _record(
    config: Config, run_id: str, planned: PlanOutcome, form: ApplyApproval | None, what: str, params: SyncParams
) -> None:
    values = (form or ApplyApproval(approve=False, comment="timed out")).model_dump(
        include={"approve", "comment", "hold_actions", "hold_users"}
    )
    get_run_logger().info("approval of %s: %s by %s", planned.plan_hash[:12], what, _approver(params, form))
    record_approval_form(config, run_id, planned.plan_hash, _approver(params, form), values)


def _apply(
    config: Config, planned: PlanOutcome, rows: list[PlanRow], run_id: str, keys: ArtifactKeys
) -> list[RowResult]:
    """One task run per chunk, all submitted at once, :data:`LOOKAHEAD` of them past the oldest unfinished
    one at work (each task waits for its turn), with a progress artifact of the chunks finished.

    The chunks at work share the run's ``write_concurrency`` writers, so the later ones' drift re-read
    overlaps the earlier ones' writes and the writers stay busy from one chunk to the next.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    chunks = chunk_rows(rows)
    if not chunks:
        return []
    progress = create_progress_artifact(0.0, key=keys.progress, description=f"Applying {len(rows)} changes")
    assert isinstance(progress, UUID)  # the sync API (we are not in an event loop)
    results: list[RowResult] = []
    futures: list[PrefectFuture[list[RowResult]]] = []
    try:
        for i, chunk in enumerate(chunks, start=1):
            futures.append(
                apply_changes.submit(
                    config, planned.plan_hash, _plain(chunk), index=i, total=len(chunks), run_id=run_id
                )
            )
        for i, future in enumerate(futures, start=1):
            results += future.result()
            update_progress_artifact(progress, 100.0 * i / len(chunks))
    finally:
        for future in futures:
            future.wait()
        release_apply_session(config, planned.plan_hash, run_id)
    return results


def _held_by(held: list[PlanRow], holds: set[str]) -> dict[str, list[str]]:
    return {"form or guardrails": sorted(f"{r.action} {r.key}" for r in held)[:50]} if held else {}


def _conclude(
    config: Config,
    keys: ArtifactKeys,
    planned: PlanOutcome,
    report: ApplyReport | None,
    run_id: str | None,
    status: str,
    approver: str | None,
    form: ApplyApproval | None,
    held_by: dict[str, list[str]],
) -> SyncResult:
    result = SyncResult.model_validate(
        {
            "status": status,
            "plan_hash": planned.plan_hash,
            "plan_dir": str(planned.out),
            "counts": {k: int(v) for k, v in planned.summary.items() if isinstance(v, int)},
            "guardrails": planned.summary.get("guardrails", {}),
            "report": report,
            "approver": approver,
            "comment": form.comment if form else None,
            "flow_run_id": str(flow_run.id) if flow_run.id else None,
            "artifacts": keys.model_dump(),
        }
    )
    publish_report(
        report,
        keys,
        status=status,
        plan_hash=planned.plan_hash,
        plan_dir=planned.out,
        approver=approver,
        comment=result.comment,
        held_by=held_by,
    )
    summary = {**result.counts, "status": status, "plan_hash": planned.plan_hash}
    if report is not None:
        summary.update(report.model_dump(exclude={"rows", "plan_hash"}))
    finish_sync_run(config, run_id, result.run_status, summary, planned.source_users)
    return result
