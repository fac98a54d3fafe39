"""The preview names who a plan affects above the counts, and the whole plan splits into table pages."""

from __future__ import annotations

from typing import Any

from scimflow.apply import PlanRow
from scimflow.preview import md_text, preview_markdown
from scimflow.preview_risk import PlanPages, affected_lines, largest_updates, page_key, pages_lines, plan_pages

SUMMARY: dict[str, Any] = {"plan_hash": "ab" * 32, "guardrails": {"verdict": "ok"}}


def _update(key: str, fields: int) -> PlanRow:
    changes = {f"field{i}": {"from": "a", "to": "b"} for i in range(fields)}
    return PlanRow(action="update", key=key, associate_id=1, changes=changes)


def _plan(retires: int, updates: int, creates: int) -> list[PlanRow]:
    rows = [PlanRow(action="retire", key=f"leaver{i:03d}@contoso.com", reason="left Entra") for i in range(retires)]
    rows += [_update(f"mover{i:03d}@contoso.com", 1 + i % 7) for i in range(updates)]
    rows += [PlanRow(action="create", key=f"joiner{i:04d}@contoso.com") for i in range(creates)]
    return rows


def test_every_retirement_and_the_largest_updates_come_before_the_counts() -> None:
    """Each retired user and the ten updates with the most changed fields are named above the counts table."""
    rows = _plan(retires=3, updates=30, creates=5)
    md = preview_markdown(SUMMARY, rows, plan_dir="/plans/run-1")
    counts_at = md.index("| action | count |")
    for i in range(3):
        assert md.index(md_text(f"leaver{i:03d}@contoso.com")) < counts_at
    top = largest_updates(rows)[:10]
    assert [len(r.changes) for r in top] == [7] * 4 + [6] * 4 + [5] * 2  # 30 updates: 1..7 fields in turn
    assert all(md.index(md_text(r.key)) < counts_at for r in top)
    assert "**Retired (3)**, every one:" in md
    assert "… and 20 more updates — see `/plans/run-1/plan.jsonl`." in md


def test_a_long_list_says_how_many_it_leaves_out_and_which_pages_hold_them() -> None:
    """Over the cap, the retirements shown are counted and the rest named by number and page keys."""
    rows = _plan(retires=130, updates=0, creates=0)
    pages = PlanPages(("contoso-plan-abc-1", "contoso-plan-abc-2"), 100, 130)
    text = "\n".join(affected_lines(rows, pages=pages, retire_cap=100))
    assert "**Retired (130)**, the first 100 by key:" in text
    assert "… and 30 more retirements — see the plan pages (`contoso-plan-abc-1` … `contoso-plan-abc-2`)." in text
    assert md_text("leaver099@contoso.com") in text and md_text("leaver100@contoso.com") not in text


def test_a_plan_without_retirements_or_updates_says_so() -> None:
    """A plan of creates only says nobody is retired or updated, rather than showing empty tables."""
    assert affected_lines(_plan(0, 0, 4))[-1] == "No user is retired or updated by this plan."


def test_pages_hold_every_row_once_riskiest_first() -> None:
    """2,500 rows make pages of 1,000, 1,000 and 500, numbered 1..2,500, retirements on the first page."""
    rows = _plan(retires=5, updates=95, creates=2400)
    pages = plan_pages(rows, page_rows=1000)
    assert [len(p) for p in pages] == [1000, 1000, 500]
    numbered = [r["#"] for p in pages for r in p]
    assert numbered == list(range(1, 2501))
    assert sorted(r["key"] for p in pages for r in p) == sorted(md_text(r.key) for r in rows)
    assert [r["action"] for r in pages[0][:5]] == ["retire"] * 5
    assert page_key("contoso-plan-abc", 3) == "contoso-plan-abc-3"


def test_pages_over_the_cap_say_where_the_rest_is() -> None:
    """With more rows than the published pages hold, the preview says how many are only in the stored files."""
    rows = _plan(retires=0, updates=0, creates=2500)
    pages = plan_pages(rows, page_rows=1000, max_pages=2)
    assert [len(p) for p in pages] == [1000, 1000]
    published = PlanPages(("k-1", "k-2"), 1000, 2500)
    text = " ".join(pages_lines(published, stored="s3://bucket/plans/contoso/run", plan_file="/p/plan.jsonl"))
    assert "`s3://bucket/plans/contoso/run`" in text
    assert "2500 rows, riskiest first, in 2 table pages of up to 1000 rows (`k-1` to `k-2`)" in text
    assert "the pages hold the first 2000, the other 500 are only in `s3://bucket/plans/contoso/run`" in text


def test_the_approval_form_says_where_the_stored_plan_is() -> None:
    """The form's description names the stored copy of the plan files next to the local folder."""
    from scimflow.preview import approval_description

    text = approval_description(SUMMARY, plan_dir="/p", preview_key="k", stored="s3://bucket/plans/contoso/r")
    assert "plan files: `/p`, stored at `s3://bucket/plans/contoso/r`." in text
    assert "stored at" not in approval_description(SUMMARY, plan_dir="/p", preview_key="k")
