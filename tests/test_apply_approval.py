"""The sync run's approval decisions (scimflow.apply._approval), as plain functions without Prefect."""

from __future__ import annotations

from typing import get_args

import pytest

from scimflow.apply import (
    Approval,
    ChangeClass,
    FormReply,
    PlanRow,
    applies_unattended,
    approved_in_advance,
    approver_label,
    automatic_approval,
    check_form,
    held_by,
    held_classes_for,
    second_round,
)
from scimflow.vocab import CHANGE_ACTIONS

PLAN = "ab" * 32
KEYS = ["ola.hansen@contoso.com", "Sara.Lind@contoso.com"]


@pytest.mark.parametrize(
    ("mode", "cli", "expected"),
    [("approve", True, "cli"), ("auto", True, "cli"), ("auto", False, "auto"), ("approve", False, None)],
)
def test_automatic_approval_comes_from_the_command_line_or_auto_mode(
    mode: str, cli: bool, expected: str | None
) -> None:
    """--approve approves in any mode, auto mode approves itself, approve mode asks the form (None)."""
    approval = automatic_approval(mode, cli_approved=cli, os_user="kari")
    assert (approval.by if approval else None) == expected
    assert approval is None or approval.approve


@pytest.mark.parametrize(
    ("mode", "cli", "rows", "verdict", "expected"),
    [
        ("approve", True, 3, "ok", True),  # --approve: nobody to wait for
        ("auto", False, 3, "ok", True),  # auto mode approves itself
        ("approve", False, 3, "ok", False),  # the form: the slot is asked for only after the pause
        ("auto", False, 0, "ok", False),  # nothing to apply
        ("auto", False, 3, "source_unhealthy", False),  # the run ends before any apply
        ("preview", True, 3, "ok", False),  # a preview never applies
    ],
)
def test_a_run_applies_unattended_only_when_approved_without_a_person_and_with_changes(
    mode: str, cli: bool, rows: int, verdict: str, expected: bool
) -> None:
    """Who holds the tenant's apply slot from the start of the run, and keeps it after planning."""
    assert applies_unattended(mode, cli_approved=cli, change_rows=rows, verdict=verdict) is expected
    assert not expected or automatic_approval(mode, cli_approved=cli, os_user="kari") is not None
    # held from the run's start exactly when approved without a person (changes or not)
    assert approved_in_advance(mode, cli_approved=cli) is (mode != "preview" and (cli or mode == "auto"))
    assert approved_in_advance(mode, cli_approved=cli) or not expected


def test_the_approver_is_named_by_how_the_approval_was_given() -> None:
    """The form's approver is the name entered, marked unverified; --approve is the OS user; auto says so."""
    form = Approval(approve=True, by="form", comment="auto: looks fine to me", approver=" kari@contoso.com ")
    assert approver_label(form) == "kari@contoso.com (unverified, entered in the form)"
    assert approver_label(automatic_approval("auto", cli_approved=False)) == "auto (within the guardrails)"
    assert approver_label(automatic_approval("approve", cli_approved=True, os_user="ola")) == "ola (cli)"
    assert approver_label(None) == "timeout"
    long = approver_label(Approval(approve=True, by="form", approver="x" * 1000))
    assert len(long) < 255  # fits the approvals table's column


def test_the_cli_approver_defaults_to_the_os_user() -> None:
    """Without an explicit user, --approve records getpass.getuser()."""
    import getpass

    approval = automatic_approval("approve", cli_approved=True)
    assert approval is not None and approval.approver == getpass.getuser()


def test_classes_over_budget_stay_held_unless_the_form_releases_them() -> None:
    """auto and --approve hold the classes over budget; a form holds them too unless release_held names them."""
    over = ["retire"]
    assert held_classes_for(Approval(approve=True, by="auto"), over) == {"retire"}
    assert held_classes_for(Approval(approve=True, by="cli", hold_actions=("update",)), over) == {"retire", "update"}
    assert held_classes_for(Approval(approve=True, by="form"), over) == {"retire"}  # an empty hold_actions
    assert held_classes_for(Approval(approve=True, by="form", hold_actions=("create",)), over) == {"create", "retire"}
    assert held_classes_for(Approval(approve=True, by="form", release_held=("retire",)), over) == set()
    assert held_classes_for(Approval(approve=True, by="cli", release_held=("retire",)), over) == {"retire"}


def _reply(**kw: object) -> FormReply:
    values: dict[str, object] = {"approve": True, "approver": "kari@contoso.com", "plan_hash": PLAN, **kw}
    return FormReply(**values)  # type: ignore[arg-type]


def test_a_correct_form_is_accepted_with_holds_as_the_plan_spells_them() -> None:
    """Plan hash, approver and holds that name real classes and plan keys give an approval; users trimmed, any case."""
    check = check_form(
        _reply(hold_actions=["Retire "], hold_users=["  SARA.LIND@contoso.com"], release_held=["update"]),
        plan_hash=PLAN,
        plan_keys=KEYS,
    )
    assert not check.refused, check.errors
    a = check.approval
    assert (a.by, a.hold_actions, a.hold_users, a.release_held) == (
        "form",
        ("retire",),
        ("Sara.Lind@contoso.com",),
        ("update",),
    )
    assert approver_label(a) == "kari@contoso.com (unverified, entered in the form)"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"plan_hash": None}, "plan_hash is missing"),
        ({"plan_hash": "cd" * 32}, "is not this run's plan"),
        ({"plan_hash": PLAN[:12]}, "is not this run's plan"),
        ({"approver": "   "}, "approver is empty"),
        ({"hold_actions": ["retires"]}, "'retires' is not a change class"),
        ({"hold_actions": ["retirement"]}, "'retirement' is not a change class"),
        ({"release_held": ["all"]}, "release_held: 'all' is not a change class"),
        ({"hold_users": ["Sara Lind"]}, "'Sara Lind' is not a user key of this plan"),
        ({"hold_actions": ["retire"], "release_held": ["retire"]}, "both name retire"),
    ],
)
def test_a_bad_answer_is_refused_with_its_error(fields: dict[str, object], needle: str) -> None:
    """A stale/forged hash, no name, a typo in a class or a user not in the plan refuses the answer, naming it."""
    check = check_form(_reply(**fields), plan_hash=PLAN, plan_keys=KEYS)
    assert check.refused
    assert any(needle in e for e in check.errors), check.errors


def test_a_rejection_is_never_refused() -> None:
    """approve=false applies nothing whatever else it carries, so it is taken as it is."""
    check = check_form(FormReply(approve=False, hold_actions=["nonsense"]), plan_hash=PLAN, plan_keys=KEYS)
    assert not check.refused and check.approval.approve is False


def test_the_form_choices_are_the_change_classes() -> None:
    """The form's Literal offers exactly scimflow.vocab.CHANGE_ACTIONS."""
    assert get_args(ChangeClass) == CHANGE_ACTIONS


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
    """Approval.form_values has the form's fields, lists for the holds and releases."""
    approval = Approval(approve=False, by="timeout", comment="timed out", hold_users=("a@x",))
    assert approval.form_values() == {
        "approve": False,
        "comment": "timed out",
        "hold_actions": [],
        "hold_users": ["a@x"],
        "release_held": [],
        "plan_hash": "",
    }


def test_a_refused_answer_is_shown_as_text_in_the_form() -> None:
    """The errors put above the form escape what the answer carried: a link in hold_users stays text."""
    from scimflow.preview import refused_note

    check = check_form(_reply(hold_users=["[Approve now](https://evil.example)"]), plan_hash=PLAN, plan_keys=KEYS)
    note = refused_note(check.errors, attempt=1, attempts=4)
    assert "nothing was applied" in note and "attempt 1 of 4" in note
    assert "](https" not in note and "\\[Approve now\\]" in note


def test_artifact_keys_are_per_run_with_the_tenant_key_as_latest_pointer() -> None:
    """Two runs of one tenant get different keys (letters, digits, dashes); the per-tenant keys are the pointers."""
    import re

    from scimflow.preview import artifact_keys, latest_pointer

    a = artifact_keys("contoso", "5f0c6c7e-1d2b-4c3a-9e8f-0123456789ab")
    b = artifact_keys("contoso", "6a1d7d8f-2e3c-4d4b-8f90-123456789abc")
    assert a["preview"] == "contoso-preview-5f0c6c7e1d2b" and a["report"] == "contoso-report-5f0c6c7e1d2b"
    assert {a[k] for k in ("preview", "changes", "report", "progress")}.isdisjoint(b.values())
    assert (a["latest_preview"], a["latest_report"]) == ("contoso-sync-preview", "contoso-sync-report")
    assert all(re.fullmatch(r"[a-z0-9-]+", k) for k in [*a.values(), *artifact_keys("contoso", None).values()])
    assert artifact_keys("contoso", None)["preview"] != artifact_keys("contoso", None)["preview"]
    assert "contoso-preview-5f0c6c7e1d2b" in latest_pointer("preview", a["preview"], plan_hash=PLAN)
