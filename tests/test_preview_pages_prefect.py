"""The whole plan as table artifacts on a real Prefect server: every row once, in pages, in risk order."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from scimflow.apply import PlanRow
from scimflow.preview import md_text
from scimflow.preview_risk import PlanPages

pytestmark = [pytest.mark.prefect]


def _rows() -> list[PlanRow]:
    rows = [PlanRow(action="create", key=f"joiner{i}@contoso.com") for i in range(3)]
    return [*rows, PlanRow(action="retire", key="leaver@contoso.com", reason="disabled in Entra ID")]


def test_the_pages_hold_every_row_under_their_keys(prefect_server) -> None:
    """Four rows in pages of two: keys <prefix>-1 and -2, numbered 1-4, the retirement first; and the link."""
    from prefect import flow

    from tasks.plan_pages import publish_plan_pages

    prefix = f"contoso-plan-{uuid.uuid4().hex[:12]}"
    stored = f"file:///srv/scimflow/plans/contoso/{prefix}"

    @flow(name="publish-plan-pages")
    def publish() -> PlanPages:  # artifacts belong to a run
        return publish_plan_pages(_rows(), prefix, stored=stored, plan_hash="ab" * 32, page_rows=2)

    pages = publish()
    assert (pages.keys, pages.covered) == ((f"{prefix}-1", f"{prefix}-2"), 4)
    body = {"artifacts": {"key": {"any_": list(pages.keys)}}, "sort": "KEY_ASC"}
    found = httpx.post(f"{prefect_server.api_url}/artifacts/filter", json=body, timeout=30).json()
    tables = [a["data"] if isinstance(a["data"], list) else json.loads(a["data"]) for a in found]
    assert [[r["#"] for r in t] for t in tables] == [[1, 2], [3, 4]]
    assert tables[0][0]["key"] == md_text("leaver@contoso.com") and tables[0][0]["action"] == "retire"
    assert found[1]["description"].endswith("page 2 of 2: rows 3-4 of 4")
    body = {"artifacts": {"type": {"any_": ["markdown"]}}, "sort": "CREATED_DESC", "limit": 20}
    links = httpx.post(f"{prefect_server.api_url}/artifacts/filter", json=body, timeout=30).json()
    assert any(stored in str(a["data"]) for a in links), "no link artifact names the stored plan files"
