"""Preview and report tasks: publish the plan and the outcome as artifacts under stable per-tenant keys."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from scimflow import preview
from scimflow.apply import ApplyReport, read_plan
from scimflow.pipeline import PlanOutcome

__all__ = ["ArtifactKeys", "publish_preview", "publish_report"]


class ArtifactKeys(BaseModel):
    """The artifact keys of one tenant (lowercase letters, digits and dashes)."""

    preview: str
    changes: str
    report: str
    progress: str

    @classmethod
    def for_tenant(cls, tenant_key: str) -> ArtifactKeys:
        return cls(
            preview=f"{tenant_key}-sync-preview",
            changes=f"{tenant_key}-sync-changes",
            report=f"{tenant_key}-sync-report",
            progress=f"{tenant_key}-sync-progress",
        )


@task(name="publish-preview", cache_policy=NO_CACHE)
def publish_preview(planned: PlanOutcome, keys: ArtifactKeys) -> str:
    """Publish the preview markdown and the capped changes table; return the approval form's description."""
    rows = read_plan(planned.out, planned.plan_hash)
    md = preview.preview_markdown(planned.summary, rows, plan_dir=planned.out)
    create_markdown_artifact(key=keys.preview, markdown=md, description=f"Plan {planned.plan_hash[:12]}")
    table = preview.changes_table(rows)
    if table:
        note = f"{len(table)} of {len(rows)} rows, riskiest first; full plan in {planned.out / 'plan.jsonl'}"
        create_table_artifact(key=keys.changes, table=table, description=note)
    get_run_logger().info("preview published as %s (%d rows)", keys.preview, len(rows))
    return preview.approval_description(planned.summary, plan_dir=planned.out, preview_key=keys.preview)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(
    report: ApplyReport | None,
    keys: ArtifactKeys,
    *,
    status: str,
    plan_hash: str,
    plan_dir: Path,
    approver: str | None = None,
    comment: str | None = None,
    held_by: dict[str, list[str]] | None = None,
) -> None:
    """Publish the report artifact (applied, held, drifted, failed, verified)."""
    md = preview.report_markdown(
        report,
        status=status,
        plan_hash=plan_hash,
        approver=approver,
        comment=comment,
        held_by=held_by,
        plan_dir=plan_dir,
    )
    create_markdown_artifact(key=keys.report, markdown=md, description=f"Sync {status}")
    get_run_logger().info("report published as %s: %s", keys.report, status)
