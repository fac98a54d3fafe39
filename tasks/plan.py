"""Plan task: build the plan, judge the guardrails, write the plan files."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from flows.prefect_client import api_client
from flows.tenant_slot import LEASE_LABEL, release_lease
from scimflow import pipeline
from scimflow.config import Config
from scimflow.plan_store import store_plan
from scimflow.state import StateStore, mark_crashed_runs

__all__ = ["plan_changes", "start_sync_run"]


@task(name="plan-changes", cache_policy=NO_CACHE)
def plan_changes(
    config: Config,
    rules: Path | None,
    entra: pipeline.EntraExtract,
    so: pipeline.TargetExtract,
    validated: pipeline.Validated,
    out: Path,
    user: str | None = None,
) -> pipeline.PlanOutcome:
    """Plan the changes and write plan.jsonl, summary.json and plan.parquet into ``out``."""
    rule_set = pipeline.load_rule_set(config, rules)
    store = pipeline.open_store(config)
    try:
        outcome = pipeline.plan_with_store(config, rule_set, store, entra, so, validated, out, user=user)
    finally:
        store.close()
    get_run_logger().info(
        "plan %s: %d rows, %d changes, guardrails %s",
        outcome.plan_hash[:12],
        outcome.row_count,
        outcome.change_rows,
        outcome.verdict_name,
    )
    stored = store_plan(config, outcome.out)  # plan_store: where the files outlive this worker
    get_run_logger().info("plan files stored at %s", stored.url)
    return outcome


def _process_gone(infrastructure_pid: str | None) -> bool:
    """Whether ``host:pid`` (as :func:`flows.labels.tag_run` records it) names a process of this host that
    no longer exists. Another host's process cannot be checked here: ``False``."""
    host, _, pid = (infrastructure_pid or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False


def _alive(row: dict[str, Any]) -> bool:
    """Whether a run still ``running`` in the state store may still be at work, from its Prefect flow run.

    Not alive: its flow run ended in Prefect (crashed, cancelled: it never finished in the store), or it is
    Running but its process, on this host, is gone (killed). A paused run, a run on another host, or one
    Prefect does not know is left alone. A dead Running one is marked Crashed in Prefect too, and the
    tenant slot it may hold (flows/tenant_slot.py) is released.
    """
    if not row.get("flow_run_id"):
        return True
    with api_client() as client:
        try:
            run = client.read_flow_run(UUID(str(row["flow_run_id"])))
        except (ObjectNotFound, ValueError):
            return True
        if run.state is None or run.state.is_paused():
            return True
        if run.state.is_final() or (run.state.is_running() and _process_gone(run.infrastructure_pid)):
            if not run.state.is_final():
                message = "its process ended without finishing the run (found by the next run)"
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            lease = (run.labels or {}).get(LEASE_LABEL)
            if lease:  # the tenant slot it held while applying: free it now, not when its lease expires
                release_lease(str(lease))
            return False
    return True


@task(name="start-sync-run", cache_policy=NO_CACHE)
def start_sync_run(config: Config, mode: str, planned: pipeline.PlanOutcome, flow_run_id: str | None) -> str:
    """Record the run in the state store; return its id (the journal and approvals refer to it).

    Runs left ``running`` by a process that died are marked ``crashed`` first (:func:`_alive`).
    """
    store = pipeline.open_store(config)
    try:
        _mark_crashed(store)
        return store.start_run(
            mode, plan_hash=planned.plan_hash, source_users=planned.source_users, flow_run_id=flow_run_id
        )
    finally:
        store.close()


def _mark_crashed(store: StateStore) -> None:
    crashed = mark_crashed_runs(store, _alive)
    if crashed:
        get_run_logger().warning("runs whose process died, now marked crashed: %s", ", ".join(crashed))


def reap_dead_runs(config: Config) -> None:
    """Mark crashed the tenant's runs whose process died, freeing the tenant slot one of them held
    (:func:`_alive`): what :func:`start_sync_run` does first, for a run that finds the slot taken earlier."""
    store = pipeline.open_store(config)
    try:
        _mark_crashed(store)
    finally:
        store.close()
