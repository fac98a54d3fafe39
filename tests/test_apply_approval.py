"""The sync run's approval decisions (scimflow.apply._approval), as plain functions without Prefect."""

from __future__ import annotations

import pytest

from scimflow.apply import (
    Approval,
    PlanRow,
    approver_label,
    automatic_approval,
    held_by,
    held_classes_for,
    second_round,
)


@pytest.mark.parametrize(
    ("mode", "cli", "expected"),
    [("approve", True, "cli"), ("auto", True, "cli"), ("auto", False, "auto"), ("approve", False, None)],
)
def test_automatic_approval_comes_from_the_command_line_or_auto_mode(
    mode: str, cli: bool, expected: str | None
) -> None:
    """--approve approves in any mode, auto mode approves itself, approve mode asks the form (None)."""
    approval = automatic_approval(mode, cli_approved=cli)
    assert (approval.by if approval else None) == expected
    assert approval is None or approval.approve


def test_the_approver_is_how_the_approval_was_given_not_its_comment() -> None:
    """A form whose comment starts with "auto:" is still the form's (the old guess from the comment is gone)."""
    form = Approval(approve=True, by="form", comment="auto: looks fine to me")
    assert approver_label(form) == "unknown (Prefect UI or API)"
    assert approver_label(automatic_approval("auto", cli_approved=False)) == "auto"
    assert approver_label(automatic_approval("approve", cli_approved=True)) == "cli"
    assert approver_label(None) == "timeout"


def test_classes_over_budget_are_held_only_when_nobody_saw_the_plan() -> None:
    """auto and --approve hold the classes over budget; a form holds only what it says (it showed them pre-filled)."""
    over = ["retire"]
    assert held_classes_for(Approval(approve=True, by="auto"), over) == {"retire"}
    assert held_classes_for(Approval(approve=True, by="cli", hold_actions=("update",)), over) == {"retire", "update"}
    assert held_classes_for(Approval(approve=True, by="form"), over) == set()
    assert held_classes_for(Approval(approve=True, by="form", hold_actions=("create",)), over) == {"create"}


@pytest.mark.parametrize(
    ("by", "mode", "wait", "held", "over", "expected"),
    [
        ("auto", "auto", True, 3, ["retire"], True),
        ("auto", "auto", False, 3, ["retire"], False),  # --no-wait-for-held: end with them held
        ("cli", "auto", True, 3, ["retire"], False),  # approved on the command line: no second round
        ("auto", "auto", True, 0, ["retire"], False),  # nothing held
        ("auto", "auto", True, 3, [], False),  # held by the form's own choice, not over budget
        ("form", "approve", True, 3, ["retire"], False),  # the approver saw the plan
    ],
)
def test_second_round_only_for_auto_runs_with_rows_held_over_budget(
    by: str, mode: str, wait: bool, held: int, over: list[str], expected: bool
) -> None:
    """A second approval round runs in auto mode (not --approve), when waiting, for rows held over budget."""
    approval = Approval(approve=True, by=by)  # type: ignore[arg-type]
    assert second_round(approval, mode=mode, wait_for_held=wait, held_rows=held, over_budget=over) is expected


def test_held_by_lists_at_most_fifty_rows_sorted() -> None:
    """The report's held list is sorted, capped at 50, and empty when nothing is held."""
    rows = [PlanRow(action="retire", key=f"u{i:03d}@x") for i in range(60, 0, -1)]
    listed = held_by(rows)["form or guardrails"]
    assert len(listed) == 50 and listed[0] == "retire u001@x" and listed == sorted(listed)
    assert held_by([]) == {}


def test_the_recorded_form_values_keep_the_four_fields() -> None:
    """Approval.form_values has exactly the form's fields, lists for the holds."""
    approval = Approval(approve=False, by="timeout", comment="timed out", hold_users=("a@x",))
    assert approval.form_values() == {
        "approve": False,
        "comment": "timed out",
        "hold_actions": [],
        "hold_users": ["a@x"],
    }
