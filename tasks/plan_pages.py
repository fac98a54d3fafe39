"""The whole plan in the Prefect UI: one table artifact per page of rows, and a link to the stored plan files.

Called by the ``publish-preview`` task (tasks/preview.py) before the preview markdown, which names the pages
(:class:`scimflow.preview_risk.PlanPages`). Page ``n`` of a run's plan has the key ``<tenant>-plan-<run>-<n>``;
the rows are :func:`scimflow.preview_risk.plan_pages` (riskiest first, numbered, escaped as the preview's).
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import create_link_artifact, create_table_artifact

from scimflow.apply import PlanRow
from scimflow.preview_risk import MAX_PAGES, PAGE_ROWS, PlanPages, page_key, plan_pages

__all__ = ["publish_plan_pages"]


def publish_plan_pages(
    rows: Sequence[PlanRow],
    prefix: str,
    *,
    stored: str | None,
    plan_hash: str,
    page_rows: int = PAGE_ROWS,
    max_pages: int = MAX_PAGES,
) -> PlanPages:
    """Publish ``rows`` as table pages keyed ``<prefix>-<n>`` and, when the files were ``stored``, a link
    artifact to them; return what was published."""
    pages = plan_pages(rows, page_rows=page_rows, max_pages=max_pages)
    keys = tuple(page_key(prefix, n) for n in range(1, len(pages) + 1))
    for n, (key, table) in enumerate(zip(keys, pages, strict=True), start=1):
        first, last = table[0]["#"], table[-1]["#"]
        description = f"Plan {plan_hash[:12]}, page {n} of {len(pages)}: rows {first}-{last} of {len(rows)}"
        create_table_artifact(key=key, table=table, description=description)
    if stored:
        create_link_artifact(
            link=stored, link_text=f"plan files {plan_hash[:12]}", description="The plan files, stored"
        )
    return PlanPages(keys, page_rows, len(rows))
