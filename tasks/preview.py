"""Preview and report tasks: publish the plan and the outcome as artifacts under keys unique to the run.

Each run's preview, changes table, report and progress have keys of their own (``{tenant}-preview-{run}``),
so two runs of one tenant (a nightly and a paused on-demand run) never show each other's plan. The stable
per-tenant keys (``{tenant}-sync-preview``, ``{tenant}-sync-report``) are only "latest" pointers: a short
artifact naming the run and the per-run key, never the plan itself.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from scimflow import preview
from scimflow.apply import ApplyReport, read_plan
from scimflow.pipeline import PlanOutcome
from tasks.plan_pages import publish_plan_pages

__all__ = ["ArtifactKeys", "publish_preview", "publish_report"]


class ArtifactKeys(BaseModel):
    """The artifact keys of one run (lowercase letters, digits and dashes): its own, and the tenant's
    "latest" pointers (:func:`scimflow.preview.artifact_keys`)."""

    preview: str
    changes: str
    report: str
    progress: str
    plan: str
    latest_preview: str
    latest_report: str

    @classmethod
    def for_run(cls, tenant_key: str, flow_run_id: object) -> ArtifactKeys:
        """The keys of the flow run ``flow_run_id`` (``None`` outside a flow run: a local, unique id)."""
        return cls(**preview.artifact_keys(tenant_key, str(flow_run_id) if flow_run_id else None))


@task(name="publish-preview", cache_policy=NO_CACHE)
def publish_preview(planned: PlanOutcome, keys: ArtifactKeys, stored: str | None = None) -> str:
    """Publish the whole plan as table pages, a link to the ``stored`` plan files, the preview markdown and
    the capped changes table; return the approval form's description."""
    rows = read_plan(planned.out, planned.plan_hash)
    pages = publish_plan_pages(rows, keys.plan, stored=stored, plan_hash=planned.plan_hash)
    md = preview.preview_markdown(planned.summary, rows, plan_dir=planned.out, stored=stored, pages=pages)
    create_markdown_artifact(key=keys.preview, markdown=md, description=f"Plan {planned.plan_hash[:12]}")
    pointer = preview.latest_pointer("preview", keys.preview, plan_hash=planned.plan_hash)
    create_markdown_artifact(key=keys.latest_preview, markdown=pointer, description=f"Latest: {keys.preview}")
    table = preview.changes_table(rows)
    if table:
        note = f"{len(table)} of {len(rows)} rows, riskiest first; full plan in {planned.out / 'plan.jsonl'}"
        create_table_artifact(key=keys.changes, table=table, description=note)
    get_run_logger().info("preview published as %s (%d rows)", keys.preview, len(rows))
    return preview.approval_description(planned.summary, plan_dir=planned.out, preview_key=keys.preview, stored=stored)


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
    pointer = preview.latest_pointer("report", keys.report, plan_hash=plan_hash, status=status)
    create_markdown_artifact(key=keys.latest_report, markdown=pointer, description=f"Latest: {keys.report}")
    get_run_logger().info("report published as %s: %s", keys.report, status)
