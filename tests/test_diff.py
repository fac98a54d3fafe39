"""The plan diff as `scimflow plan` prints it (scimflow.diff)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from scimflow.diff import diff_lines, read_plan_rows, render_value, summary_line

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(tmp_path: Path) -> list[dict]:
    (tmp_path / "plan.jsonl").write_bytes((FIXTURES / "expected-plan.jsonl").read_bytes())
    rows = read_plan_rows(tmp_path)
    assert rows == [json.loads(line) for line in (FIXTURES / "expected-plan.jsonl").read_text().splitlines()]
    return rows


def _plain(rows: list[dict], **kwargs) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    for line in diff_lines(rows, **kwargs):
        console.print(line)
    return out.getvalue()


def test_worked_example_reads_like_terraform(tmp_path: Path) -> None:
    """Each user is one line under its action, with every change of a create and from → to of an update."""
    text = _plain(_rows(tmp_path))
    assert text.splitlines()[0] == "Plan: 2 to create, 1 to update, 1 to retire."
    assert "+ create (2)" in text
    assert "  + ola.hansen@contoso.com  rules: Employees, Sales" in text
    assert 'user_plan        "Sales Premium"' in text
    assert "~ update (1)" in text
    assert 'role             "Sales" → "Manager"' in text
    assert 'secondary_groups [] → ["Sales Norway"]' in text
    assert "  - sara.lind@contoso.com  #12: disabled in Entra ID" in text
    assert text.index("+ create") < text.index("~ update") < text.index("- retire")


def test_every_action_has_a_section_with_reasons() -> None:
    """Reactivate, quarantine and conflict rows are listed with their reasons, never dropped."""
    rows = [
        {
            "action": "reactivate",
            "key": "back@x",
            "associate_id": 5,
            "changes": {"active": {"from": False, "to": True}, "title": {"from": "A", "to": "B"}},
            "rules": ["R"],
            "reason": None,
        },
        {
            "action": "quarantine",
            "key": "bad@x",
            "associate_id": None,
            "changes": {},
            "rules": ["R"],
            "reason": "unknown role 'Boss' (rule R)",
        },
        {
            "action": "conflict",
            "key": "twin@x",
            "associate_id": None,
            "changes": {},
            "rules": [],
            "reason": "matches 2 SuperOffice users",
        },
    ]
    text = _plain(rows)
    assert "↺ reactivate (1)" in text and '"A" → "B"' in text and "active" not in text
    assert "! quarantine (not applied) (1)" in text and "bad@x: unknown role 'Boss' (rule R)" in text
    assert "? conflict (not applied) (1)" in text and "twin@x: matches 2 SuperOffice users" in text


def test_long_sections_are_cut_with_a_count() -> None:
    """Past the limit a section says how many more rows there are instead of hiding them."""
    rows = [
        {"action": "retire", "key": f"u{i:03}@x", "associate_id": i, "changes": {}, "reason": "gone"} for i in range(30)
    ]
    text = _plain(rows, limit=10)
    assert text.count("  - u") == 10
    assert "… and 20 more (retire): see plan.jsonl" in text


def test_directory_markup_is_printed_as_text() -> None:
    """A display name that looks like rich markup is shown literally, not interpreted."""
    rows = [
        {
            "action": "create",
            "key": "[bold]x[/bold]@x",
            "changes": {"title": {"from": None, "to": "[red]boss"}},
            "rules": [],
        }
    ]
    text = _plain(rows)
    assert "[bold]x[/bold]@x" in text and '"[red]boss"' in text


def test_values_and_empty_plan() -> None:
    """Values render in one short form, and an empty plan says there is nothing to change."""
    assert render_value(None) == "(none)"
    assert render_value(["a", "b"]) == '["a", "b"]'
    assert render_value(True) == "true"
    assert render_value(7) == "7"
    assert summary_line([]).startswith("No changes.")


def _group(action: str, name: str, added: list[str] | None = None, removed: list[str] | None = None) -> dict:
    changes: dict = {}
    if added:
        changes["members_added"] = {"from": None, "to": added}
    if removed:
        changes["members_removed"] = {"from": removed, "to": None}
    partner = "g-1" if action == "update_group" else None
    return {"action": action, "key": name, "associate_id": partner, "changes": changes, "rules": [], "reason": None}


def test_scim_group_rows_list_members_added_and_removed() -> None:
    """A SCIM plan's group rows get their own sections after the users, one + or - line per member."""
    rows = [
        {"action": "retire", "key": "sara@x", "associate_id": "u-9", "changes": {}, "reason": "disabled"},
        _group("create_group", "scimflow-role-Manager", added=["kari@x"]),
        _group("update_group", "scimflow-role-Sales", added=["ola@x"], removed=["kari@x"]),
    ]
    text = _plain(rows)
    assert text.splitlines()[0] == "Plan: 1 to retire, 1 group to create, 1 group to update."
    assert "+ create group (1)\n  + scimflow-role-Manager\n      + kari@x\n" in text
    assert "~ update group (1)\n  ~ scimflow-role-Sales  #g-1\n      + ola@x\n      - kari@x\n" in text
    assert text.index("- retire") < text.index("+ create group") < text.index("~ update group")


def test_long_member_lists_are_cut_with_a_count() -> None:
    """A group gaining 30 members shows the limit's worth and counts the rest."""
    members = [f"u{i:02}@x" for i in range(30)]
    text = _plain([_group("update_group", "g", added=members, removed=members[:3])], limit=5)
    assert text.count("      + u") == 5 and text.count("      - u") == 3
    assert "… and 25 more members added: see plan.jsonl" in text
    assert "2 groups to create" in _plain([_group("create_group", "a"), _group("create_group", "b")])


def test_control_characters_in_directory_data_are_escaped() -> None:
    """An escape sequence in a key, reason or value reaches the terminal escaped, never as a control code."""
    rows = [
        {"action": "conflict", "key": "evil\x1b[2J@x", "changes": {}, "rules": [], "reason": "r\x9b31m"},
        {"action": "create", "key": "n@x", "changes": {"title": {"from": None, "to": "a\u202eb"}}, "rules": []},
    ]
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system="standard")
    for line in diff_lines(rows):
        console.print(line)
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\x9b" not in text and "\u202e" not in text
    assert "evil\\u001b[2J@x" in text and "r\\u009b31m" in text and "a\\u202eb" in text


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    """read_plan_rows names the file and line of a line that does not parse."""
    (tmp_path / "plan.jsonl").write_text('{"action": "create"}\n{oops\n')
    with pytest.raises(ValueError, match=r"plan\.jsonl line 2: not JSON"):
        read_plan_rows(tmp_path)
