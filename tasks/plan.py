"""Plan task: build the plan, judge the guardrails, write the plan files."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from scimflow import pipeline
from scimflow.config import Config

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
    return outcome


@task(name="start-sync-run", cache_policy=NO_CACHE)
def start_sync_run(config: Config, mode: str, planned: pipeline.PlanOutcome, flow_run_id: str | None) -> str:
    """Record the run in the state store; return its id (the journal and approvals refer to it)."""
    store = pipeline.open_store(config)
    try:
        return store.start_run(
            mode, plan_hash=planned.plan_hash, source_users=planned.source_users, flow_run_id=flow_run_id
        )
    finally:
        store.close()
