"""The planner: matching, situations, diff, guardrails and plan files (vectorised in Polars).

Usage::

    plan = build_plan(entra, so, reference, ruleset, links, quarantine)
    verdict = evaluate_guardrails(plan, config.guardrails, entra.height, store.last_successful_source_count())
    plan_hash = write_plan_files(plan, verdict, out)
"""

from __future__ import annotations

from scimflow.plan._cost import (
    COST_FILE,
    Cost,
    RoundTrips,
    TargetTiming,
    cost_lines,
    cost_text,
    plan_cost,
    read_cost,
    write_cost,
)
from scimflow.plan._files import plan_lines, write_plan_files
from scimflow.plan._grace import (
    PENDING_FILE,
    GraceOutcome,
    PendingFileError,
    pending_section,
    read_pending,
    save_grace,
)
from scimflow.plan._guardrails import CHANGE_CLASSES, GuardrailVerdict, evaluate_guardrails
from scimflow.plan._planner import COUNT_KEYS, ROW_SCHEMA, Plan, build_plan
from scimflow.plan._scim import GROUP_ACTIONS, GROUP_COUNT_KEYS, group_change_rows, plan_scim, scim_target_frame
from scimflow.plan.fixtures import frames_from_fixtures

__all__ = [
    "CHANGE_CLASSES",
    "COST_FILE",
    "COUNT_KEYS",
    "GROUP_ACTIONS",
    "GROUP_COUNT_KEYS",
    "PENDING_FILE",
    "ROW_SCHEMA",
    "Cost",
    "GraceOutcome",
    "GuardrailVerdict",
    "PendingFileError",
    "Plan",
    "RoundTrips",
    "TargetTiming",
    "build_plan",
    "cost_lines",
    "cost_text",
    "evaluate_guardrails",
    "frames_from_fixtures",
    "group_change_rows",
    "pending_section",
    "plan_cost",
    "plan_lines",
    "plan_scim",
    "read_cost",
    "read_pending",
    "save_grace",
    "scim_target_frame",
    "write_cost",
    "write_plan_files",
]
