"""Pure parts of the apply engine and the preview (no Prefect, no emulators)."""

from __future__ import annotations

import hashlib

import pytest

from scimflow.apply import PlanChangedError, PlanRow, chunk_rows, read_plan, split_held
from scimflow.preview import changes_table, preview_markdown

ROWS = [
    PlanRow(action="create", key="a@x.com", changes={"user_name": {"from": None, "to": "a@x.com"}}, rules=["R1"]),
    PlanRow(action="update", key="b@x.com", associate_id=2, changes={"role": {"from": "User", "to": "Sales"}}),
    PlanRow(action="retire", key="c@x.com", associate_id=3, changes={"active": {"from": True, "to": False}}),
    PlanRow(action="quarantine", key="d@x.com", reason="bad UPN"),
]


@pytest.mark.parametrize("n", [0, 1, 24, 25, 26, 250, 10_000, 1_000_000], ids=lambda n: f"{n}-rows")
def test_chunk_count_is_capped(n):
    """However many changes, there are at most 10 chunks and every row is in exactly one."""
    rows = [ROWS[0]] * n
    chunks = chunk_rows(rows)
    assert len(chunks) <= 10 and sum(len(c) for c in chunks) == n


def test_split_held_leaves_out_quarantine_and_held_classes_and_users():
    """Held classes and users (keys compared case-insensitively) are held; quarantine rows are neither."""
    go, held = split_held(ROWS, ["retire"], ["A@X.com"])
    assert [r.key for r in go] == ["b@x.com"]
    assert sorted(r.key for r in held) == ["a@x.com", "c@x.com"]


def test_read_plan_refuses_a_changed_file(tmp_path):
    """A plan.jsonl whose bytes no longer hash to the approved plan_hash is refused."""
    body = "".join(r.model_dump_json() + "\n" for r in ROWS).encode()
    (tmp_path / "plan.jsonl").write_bytes(body)
    assert len(read_plan(tmp_path, hashlib.sha256(body).hexdigest())) == 4
    with pytest.raises(PlanChangedError):
        read_plan(tmp_path, "0" * 64)


def test_preview_puts_the_riskiest_changes_first():
    """Retirements come first, then role and plan changes; the plan hash and rule hits are shown."""
    table = changes_table(ROWS)
    assert [r["action"] for r in table] == ["retire", "update", "create", "quarantine"]
    md = preview_markdown({"plan_hash": "abc123", "create": 1, "guardrails": {"verdict": "ok"}}, ROWS, plan_dir="/p")
    assert "abc123" in md and "| R1 | 1 |" in md
    risky = md[md.index("Riskiest") :]
    assert risky.index("| retire |") < risky.index("| update |") < risky.index("| create |")
