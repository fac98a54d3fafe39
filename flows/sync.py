"""The ``sync-users`` flow: extract, validate, plan, preview, approve, apply, report.

Only wiring lives here; every decision and format is a plain function in ``scimflow`` (pipeline, apply,
preview; the approval decisions in :mod:`scimflow.apply._approval`) and every stage is a task in ``tasks/``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from pydantic import Field

from flows._apply_common import TASK_RUNNER, apply_in_chunks, conclude
from flows._apply_common import plain as _plain
from flows.alerts import alert_approval_waiting, alert_on_plan
from flows.labels import run_name, tag_run
from flows.logs import with_core_logs
from flows.states import running_after_pause_timeout
from flows.tenant_slot import TenantSlot
from scimflow import plan_store
from scimflow.apply import (
    HELD_WHY,
    LOOKAHEAD,
    MAX_REFUSALS,
    Approval,
    ChangeClass,
    Conclusion,
    FormReply,
    SyncResult,
    SyncStatus,
    applies_unattended,
    approved_in_advance,
    approver_label,
    automatic_approval,
    check_form,
    held_by,
    held_classes_for,
    plan_file_hash,
    read_plan,
    second_round,
    split_held,
    status_of,
)
from scimflow.config import Config, load_config
from scimflow.pipeline import EntraExtract, PlanOutcome, new_plan_dir
from scimflow.preview import refused_note
from scimflow.sync_params import SyncParams
from scimflow.vocab import CHANGE_ACTIONS
from tasks.apply import (
    finish_changes,
    hold_changes,
    load_approved_plan,
    record_approval_form,
)
from tasks.extract import extract_entra_users, extract_target_users
from tasks.plan import plan_changes, reap_dead_runs, start_sync_run
from tasks.preview import ArtifactKeys, publish_preview
from tasks.validate import validate_users

__all__ = ["LOOKAHEAD", "ApplyApproval", "SyncParams", "sync_users"]


class ApplyApproval(RunInput):
    """The approval form (the Prefect UI renders it from this schema; the server validates a resume by it).

    The answer is checked by :func:`scimflow.apply.check_form` before anything is applied: it must
    carry this run's ``plan_hash`` (pre-filled) and an ``approver``; ``hold_actions`` / ``release_held`` are
    change classes (choices: any other value is refused by Prefect's server, the run stays paused);
    ``hold_users`` must be user keys of the plan. A refused answer applies nothing and the form is asked again
    with the error shown, :data:`MAX_REFUSALS` times, then the run ends rejected.

    Who approved: the open-source Prefect server has no users. A resume (``POST /flow_runs/{id}/resume``)
    carries no identity, and the ``prefect.flow-run.Running`` event it causes relates only the flow, its
    deployment, work pool, tags and the run's creator (``prefect/server/models/events.py``), no actor. So the
    approver is the name entered here, recorded as unverified. Prefect Cloud adds the acting user to its
    events, but nothing in this flow reads Cloud's events yet.
    """

    approve: bool = Field(default=False, description="Apply this plan (leave off to reject it).")
    approver: str = Field(
        default="", description="Your name or e-mail address; required to approve (recorded as entered, unverified)."
    )
    plan_hash: str = Field(default="", description="The hash of the plan you approve (pre-filled; must match).")
    comment: str = ""
    hold_actions: list[ChangeClass] = Field(default_factory=list, description="Change classes not to apply.")
    release_held: list[ChangeClass] = Field(
        default_factory=list, description="Classes held over their guardrail budget that you let through anyway."
    )
    hold_users: list[str] = Field(default_factory=list, description="User keys (as in the preview) not to apply.")


@flow(name="sync-users", flow_run_name=run_name, log_prints=False, task_runner=TASK_RUNNER)
@with_core_logs  # the core's scimflow.* lines in the run's logs (flows/logs.py)
def sync_users(params: SyncParams) -> State[SyncResult]:
    """Sync Entra ID users into the target: plan, publish the preview, wait for approval, apply in chunks.

    Approval **pauses** the run (``pause_flow_run``) rather than suspending it: a suspended run exits and
    restarts from the top when resumed, re-running extraction and planning (side effects, and a plan that
    may differ from the one approved). A paused run keeps the planned state in this process, so what is
    applied is exactly the plan whose hash the approver saw. A timeout counts as a rejection.

    The run ends in the state its outcome calls for (:mod:`flows.states`): Failed for exit 1, a named
    Completed state (``Partial``, ``Rejected``...) for exit 3, Completed for exit 0; its data is the
    :class:`SyncResult` (read it back with :func:`flows.states.result_of`).
    """
    config = load_config(params.config)
    tag_run(config)  # tenant:<key>, target:<target> (flows/labels.py)
    keys = ArtifactKeys.for_run(config.tenant_key, flow_run.id)
    # One apply per tenant at a time (flows/tenant_slot.py); a dead run's slot is freed when found taken.
    slot = TenantSlot(config.tenant_key, on_busy=lambda: reap_dead_runs(config))
    if approved_in_advance(params.mode, cli_approved=params.cli_approved):
        slot.request()  # no person to wait for: held from now on, the wait overlapping the reads
    try:
        entra = extract_entra_users(config, params.full)
        so = extract_target_users(config, entra)
        checked = validate_users(entra, so)
        rules = Path(params.rules) if params.rules else None
        planned = plan_changes(config, rules, entra, so, checked, new_plan_dir(config), params.user)
        return _after_planning(config, params, keys, planned, entra, slot)
    finally:
        slot.release()  # given back by the apply already, unless the run ended before it


def _after_planning(
    config: Config, params: SyncParams, keys: ArtifactKeys, planned: PlanOutcome, entra: EntraExtract, slot: TenantSlot
) -> State[SyncResult]:
    """The rest of :func:`sync_users`, from the preview on."""
    if not applies_unattended(
        params.mode, cli_approved=params.cli_approved, change_rows=planned.change_rows, verdict=planned.verdict_name
    ):
        slot.release(wait=False)  # nothing this run will apply unasked: another run may have the slot now
    description = publish_preview(planned, keys, plan_store.location(config, planned.out))  # stored by plan_changes
    if params.mode == "preview":
        return _conclude(config, keys, planned, Conclusion("preview"))
    run_id = start_sync_run(config, params.mode, planned, flow_run.id)
    alert_on_plan(config, planned, params)  # an unhealthy source, classes held over budget (flows/alerts.py)
    if planned.verdict_name == "source_unhealthy":
        return _conclude(config, keys, planned, Conclusion("source_unhealthy", run_id=run_id))
    if planned.change_rows == 0:  # still record the links, the baseline and the source count
        report = finish_changes(config, planned.plan_hash, [], [], planned.plan.matched_pairs, entra)
        return _conclude(config, keys, planned, Conclusion(status_of(report), report, run_id))
    over_budget = planned.held_classes
    approval = automatic_approval(params.mode, cli_approved=params.cli_approved) or _ask(
        config, run_id, planned, description, params
    )
    if approval is None or not approval.approve:
        status: SyncStatus = "timed_out" if approval is None else "rejected"
        _record(config, run_id, planned, approval, status)
        return _conclude(
            config, keys, planned, Conclusion(status, None, run_id, approver_label(approval), _comment(approval))
        )
    _record(config, run_id, planned, approval, "approved")
    if plan_file_hash(planned.out) != planned.plan_hash:
        return _conclude(config, keys, planned, Conclusion("plan_changed", None, run_id, None, approval.comment))
    rows = load_approved_plan(planned.out, planned.plan_hash)
    go, held = split_held(rows, held_classes_for(approval, over_budget), approval.hold_users)
    results = apply_in_chunks(config, planned.plan_hash, go, run_id, keys.progress, slot)  # flows/_apply_common.py
    if second_round(
        approval, mode=params.mode, wait_for_held=params.wait_for_held, held_rows=len(held), over_budget=over_budget
    ):
        second = _ask(config, run_id, planned, description, params)
        _record(config, run_id, planned, second, "approved" if second and second.approve else "rejected")
        if second is not None and second.approve:
            holds = held_classes_for(second, over_budget) | set(approval.hold_actions)
            go, held = split_held(held, holds, [*second.hold_users, *approval.hold_users])
            results += apply_in_chunks(config, planned.plan_hash, go, run_id, keys.progress)
    if held:
        results += hold_changes(config, planned.plan_hash, _plain(held), HELD_WHY, run_id)
    report = finish_changes(config, planned.plan_hash, _plain(rows), _plain(results), planned.plan.matched_pairs, entra)
    end = Conclusion(status_of(report), report, run_id, approver_label(approval), approval.comment, held_by(held))
    return _conclude(config, keys, planned, end)


# --- wiring helpers (no decisions: those are scimflow.apply's) -------------------------------------


def _comment(approval: Approval | None) -> str | None:
    return approval.comment if approval is not None else None


def _reply(form: ApplyApproval) -> FormReply:
    """The form's answer; ``plan_hash`` counts only if the resume sent it (its pre-filled default does not)."""
    return FormReply(
        approve=form.approve,
        approver=form.approver,
        plan_hash=form.plan_hash if "plan_hash" in form.model_fields_set else None,
        comment=form.comment,
        hold_actions=tuple(form.hold_actions),
        release_held=tuple(form.release_held),
        hold_users=tuple(form.hold_users),
    )


def _ask(config: Config, run_id: str, planned: PlanOutcome, description: str, params: SyncParams) -> Approval | None:
    """Pause for the approval form until an answer passes :func:`check_form` (a refused one is journaled and
    asked again with its errors, at most :data:`MAX_REFUSALS` times, then rejects); ``None`` on timeout."""
    logger = get_run_logger()
    url = f"{PREFECT_UI_URL.value()}/runs/flow-run/{flow_run.id}"
    keys = [r.key for r in read_plan(planned.out, planned.plan_hash) if r.action in CHANGE_ACTIONS]
    alert_approval_waiting(config, planned)  # the plan's counts, for the notification (flows/alerts.py)
    note = ""
    for attempt in range(1, MAX_REFUSALS + 2):
        logger.info(
            "waiting for approval of plan %s at %s (timeout %d s)", planned.plan_hash[:12], url, params.approval_timeout
        )
        try:
            form = pause_flow_run(
                wait_for_input=ApplyApproval.with_initial_data(
                    description=note + description, plan_hash=planned.plan_hash
                ),
                timeout=params.approval_timeout,
                poll_interval=params.poll_interval,
            )
        except FlowPauseTimeout:
            running_after_pause_timeout()  # else the server fails the run ("never resumed")
            logger.warning("no approval within %d s: rejected, nothing applied", params.approval_timeout)
            return None
        check = check_form(_reply(form), plan_hash=planned.plan_hash, plan_keys=keys)
        if not check.refused:
            return check.approval
        logger.warning("approval refused, nothing applied: %s", "; ".join(check.errors))
        refused = replace(check.approval, approve=False, comment=f"refused: {'; '.join(check.errors)}"[:2000])
        _record(config, run_id, planned, refused, "refused")
        if attempt > MAX_REFUSALS:
            break
        note = refused_note(check.errors, attempt=attempt, attempts=MAX_REFUSALS + 1)
    logger.warning("approval refused %d times: rejected, nothing applied", MAX_REFUSALS + 1)
    return replace(refused, comment=f"rejected after {MAX_REFUSALS + 1} refused answers; {refused.comment}"[:2000])


def _record(config: Config, run_id: str, planned: PlanOutcome, approval: Approval | None, what: str) -> None:
    values = (approval or Approval(approve=False, by="timeout", comment="timed out")).form_values()
    if approval is not None and approval.release_held:  # the journal has no column for it: said in the comment
        values["comment"] = f"{approval.comment} [released over budget: {', '.join(approval.release_held)}]".strip()
    get_run_logger().info("approval of %s: %s by %s", planned.plan_hash[:12], what, approver_label(approval))
    record_approval_form(config, run_id, planned.plan_hash, approver_label(approval), values)


def _conclude(config: Config, keys: ArtifactKeys, planned: PlanOutcome, end: Conclusion) -> State[SyncResult]:
    """Publish the report artifact, record how the run ended, and return the run's final state (its
    :class:`SyncResult` as the data): :func:`flows._apply_common.conclude` for this run's plan."""
    return conclude(
        config,
        keys,
        end,
        plan_hash=planned.plan_hash,
        plan_dir=planned.out,
        summary=planned.summary,
        source_users=planned.source_users,
    )
