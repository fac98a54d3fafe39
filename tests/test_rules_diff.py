"""`scimflow rules diff` and the preview's rules-change notice, on the worked example.

The expected users are worked out from the fixture data itself (group memberships, job titles), never from
the rules engine, so a wrong diff cannot agree with itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scimflow.plan import build_plan, frames_from_fixtures
from scimflow.rules import parse_rules
from scimflow.rules_diff import PREVIOUS_RULES_FILE, RULES_CHANGE_FILE, RulesDiff, diff_plans, rules_hash, scope_frame
from scimflow.state import StateStore
from tests.flows.flowkit import FIXTURES, Tenant, worked_example_tenant

ROOT = Path(__file__).resolve().parents[1]
GRAPH: dict[str, Any] = json.loads((FIXTURES / "graph.json").read_text())
SO: dict[str, Any] = json.loads((FIXTURES / "superoffice.json").read_text())
RULES_TEXT = (FIXTURES / "rules.yaml").read_text()
# the one-line edit: the Sales rule's plan
PLAN_EDIT = ("      user_plan: Sales Premium\n", "      user_plan: Marketing Premium\n")


def _edited(old: str, new: str, text: str = RULES_TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _group_members(name: str) -> set[str]:
    """UPNs (lower-cased) of the enabled users in group ``name``, directly or through nested groups."""
    by_id = {g["id"]: g for g in GRAPH["groups"]}
    users = {u["id"]: u for u in GRAPH["users"]}
    todo = [g["id"] for g in GRAPH["groups"] if g["displayName"] == name]
    seen: set[str] = set()
    members: set[str] = set()
    while todo:
        gid = todo.pop()
        if gid in seen:
            continue
        seen.add(gid)
        for m in by_id[gid]["members"]:
            if m in by_id:
                todo.append(m)
            elif m in users and users[m].get("accountEnabled", True):
                members.add(users[m]["userPrincipalName"].lower())
    return members


def _enabled_users() -> dict[str, dict[str, Any]]:
    return {u["userPrincipalName"].lower(): u for u in GRAPH["users"] if u.get("accountEnabled", True)}


def _diff(old_text: str, new_text: str) -> Any:
    entra, so, ref = frames_from_fixtures(GRAPH, SO)
    old, new = parse_rules(old_text, source="old.yaml"), parse_rules(new_text, source="new.yaml")
    return diff_plans(build_plan(entra, so, ref, old), build_plan(entra, so, ref, new), scope_frame(old, new, entra))


def _by_key(frame: Any) -> dict[str, dict[str, Any]]:
    return {r["key"]: {**r, "changes": json.loads(r["changes"])} for r in frame.iter_rows(named=True)}


def test_one_line_plan_edit_names_exactly_the_sales_members() -> None:
    """Changing the Sales rule's plan changes exactly the enabled (transitive) members of SO Sales, plan only."""
    expected = _group_members("SO Sales")
    assert expected == {"kari.nordmann@contoso.com", "ola.hansen@contoso.com"}  # Ola through Sales Oslo
    users = _by_key(_diff(RULES_TEXT, _edited(*PLAN_EDIT)))
    assert set(users) == expected
    for u in users.values():
        assert u["kind"] == "values"
        assert u["changes"] == {"user_plan": {"from": "Sales Premium", "to": "Marketing Premium"}}


def test_if_not_set_default_edit_reaches_only_users_no_later_rule_gives_a_role() -> None:
    """The Employees rule's default role matters only for employees outside SO Sales who are no managers."""
    managers = {k for k, u in _enabled_users().items() if "Manager" in (u.get("jobTitle") or "")}
    expected = _group_members("Employees") - _group_members("SO Sales") - managers
    assert expected == {"per.berg@contoso.com"}
    users = _by_key(_diff(RULES_TEXT, _edited("role: {value: User,", "role: {value: Administrator,")))
    assert set(users) == expected
    assert users["per.berg@contoso.com"]["changes"] == {"role": {"from": "User", "to": "Administrator"}}


def test_mapping_edit_names_users_whose_mapped_value_differs() -> None:
    """Mapping title from department instead of jobTitle changes the users in scope whose two attributes differ."""
    in_scope = _group_members("Employees") | _group_members("SO Sales") | _group_members("SO Support")
    enabled = _enabled_users()
    expected = {k for k in in_scope if enabled[k].get("jobTitle") != enabled[k].get("department")}
    assert expected  # the fixture has some
    users = _by_key(_diff(RULES_TEXT, _edited("title: jobTitle", "title: department")))
    assert set(users) == expected
    for key, u in users.items():
        assert u["fields"] == ["title"]
        assert u["changes"]["title"] == {"from": enabled[key]["jobTitle"], "to": enabled[key]["department"]}


def test_enter_and_leave_scope_say_who_is_created_and_retired() -> None:
    """Moving the scope from SO Sales to 'employees outside SO Sales' creates Per, retires Kari, drops Ola's create."""
    old = "version: 1\nrules:\n  - name: A\n    when: {in_group: SO Sales}\n    set: {role: Sales}\n"
    new = "version: 1\nrules:\n  - name: A\n    when: {in_group: Employees, not_in_group: SO Sales}\n    set: {role: User}\n"
    frame = _diff(old, new)
    counts = RulesDiff(users=frame).counts
    assert (counts["enters"], counts["leaves"], counts["create"], counts["retire"]) == (1, 2, 1, 1)
    users = _by_key(frame)
    sales, employees = _group_members("SO Sales"), _group_members("Employees")
    assert {k for k, u in users.items() if u["kind"] == "enters"} == employees - sales
    assert {k for k, u in users.items() if u["kind"] == "leaves"} == sales
    per, kari, ola = users["per.berg@contoso.com"], users["kari.nordmann@contoso.com"], users["ola.hansen@contoso.com"]
    assert (per["action_old"], per["action_new"]) == ("out_of_scope", "create")
    assert per["changes"]["role"] == {"from": None, "to": "User"}
    assert (kari["action_new"], kari["associate_id"]) == ("retire", "11")  # linked: retired
    assert kari["changes"]["active"] == {"from": True, "to": False}
    assert (ola["action_old"], ola["action_new"]) == ("create", "out_of_scope")  # no partner: just not created


def test_scim_target_compares_users_not_computed_groups() -> None:
    """For a SCIM target (an empty one: every user a create), the plan edit names the same users; group rows are left out."""
    import polars as pl

    from scimflow.connectors.scim import SCIM_GROUPS_SCHEMA, SCIM_USERS_SCHEMA
    from scimflow.plan import plan_scim

    entra, _, _ = frames_from_fixtures(GRAPH, SO)
    users, groups = pl.DataFrame(schema=SCIM_USERS_SCHEMA), pl.DataFrame(schema=SCIM_GROUPS_SCHEMA)
    old, new = parse_rules(RULES_TEXT, source="old.yaml"), parse_rules(_edited(*PLAN_EDIT), source="new.yaml")
    frame = diff_plans(
        plan_scim(entra, users, groups, old), plan_scim(entra, users, groups, new), scope_frame(old, new, entra)
    )
    users_by_key = _by_key(frame)
    assert set(users_by_key) == _group_members("SO Sales")
    assert all(
        u["changes"] == {"user_plan": {"from": "Sales Premium", "to": "Marketing Premium"}}
        for u in users_by_key.values()
    )


def test_same_rules_differ_in_nothing() -> None:
    """A rule set compared with itself gives no row."""
    assert _diff(RULES_TEXT, RULES_TEXT).is_empty()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_last_applied_rules_are_those_planned_before_the_run(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two plans with one hash (empty plans) under different rules: the run's rules are the ones planned before it."""
    url = (
        f"sqlite:///{tmp_path}/state/state.db" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    )
    with StateStore(url) as store:
        assert store.last_applied_rules() is None
        store.record_plan_rules("e" * 64, rules_hash("A"), "A")
        run = store.start_run("auto", plan_hash="e" * 64)
        store.finish_run(run, "completed", {})
        store.record_plan_rules("e" * 64, rules_hash("B"), "B")  # planned after the run: not its rules
        last = store.last_applied_rules()
        assert last is not None
        assert (last.run_id, last.rules_hash, last.text) == (run, rules_hash("A"), "A")
        failed = store.start_run("auto", plan_hash="e" * 64)
        store.finish_run(failed, "failed", {})
        assert store.last_applied_rules() == last  # only applied (completed, partial) runs count
        undo = store.start_run("apply", plan_hash="f" * 64)  # a plan the planner did not make (an undo's)
        store.finish_run(undo, "completed", {})
        assert store.last_applied_rules() == last  # passed over: its rules are not known


# --- against the emulators, through the command line ------------------------------------------------


def scimflow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``scimflow ARGS`` as a user would (a child process, output piped)."""
    return subprocess.run(
        [sys.executable, "-m", "scimflow", *args], capture_output=True, text=True, cwd=ROOT, timeout=180
    )


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    """The worked example served by the emulators."""
    with worked_example_tenant(tmp_path_factory.mktemp("rules-diff")) as t:
        yield t


def _rule_files(folder: Path, new_text: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / "old.yaml", folder / "new.yaml"
    old.write_text(RULES_TEXT)
    new.write_text(new_text)
    return old, new


def test_cli_json_names_the_users_and_writes_nothing(tenant: Tenant, tmp_path: Path) -> None:
    """`rules diff --json` against the emulators exits 2 with the Sales members, and no write reaches the target."""
    old, new = _rule_files(tmp_path, _edited(*PLAN_EDIT))
    tenant.so_reset_counters()
    state_files = sorted(p.name for p in tenant.folder.rglob("*"))
    proc = scimflow("rules", "diff", str(old), str(new), "--config", str(tenant.config), "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert {u["key"] for u in doc["users"]} == _group_members("SO Sales")
    assert doc["counts"]["users"] == 2 and doc["counts"]["values"] == 2
    assert doc["counts"]["create"] == 0  # Ola is created under both rule sets
    assert doc["new"]["sha256"] == rules_hash(new.read_bytes())
    assert all(u["changes"]["user_plan"]["to"] == "Marketing Premium" for u in doc["users"])
    assert tenant.so_stats()["writes"] == 0
    assert sorted(p.name for p in tenant.folder.rglob("*")) == state_files  # no plan files, no state file


def test_cli_table_when_piped_and_exit_codes(tenant: Tenant, tmp_path: Path) -> None:
    """Piped, the table is plain text naming user, field and both values; no difference exits 0."""
    old, new = _rule_files(tmp_path, _edited("role: {value: User,", "role: {value: Administrator,"))
    proc = scimflow("rules", "diff", str(old), str(new), "--config", str(tenant.config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout
    assert "per.berg@contoso.com" in proc.stdout and "kari.nordmann" not in proc.stdout
    assert '"User"' in proc.stdout and '"Administrator"' in proc.stdout
    same = scimflow("rules", "diff", str(old), str(old), "--config", str(tenant.config))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 of 4 users differ" in same.stdout


def test_cli_bad_rule_file_names_file_and_line(tenant: Tenant, tmp_path: Path) -> None:
    """A broken NEW rule file exits 1 with the loader's error naming the file and the line."""
    old, new = _rule_files(tmp_path, _edited("when: {in_group: SO Support}", "when: {in_grup: SO Support}"))
    proc = scimflow("rules", "diff", str(old), str(new), "--config", str(tenant.config))
    assert proc.returncode == 1
    line = next(i for i, text in enumerate(new.read_text().splitlines(), 1) if "in_grup" in text)
    assert f"{new}:{line}" in proc.stderr, proc.stderr


def test_preview_notice_when_rules_changed_since_the_last_applied_run(tenant: Tenant, tmp_path: Path) -> None:
    """After an applied run, a plan with the same rules has no notice; with edited rules the preview names
    the change, the count of users and a diff command that runs."""
    from scimflow import pipeline, preview
    from scimflow.config import load_config

    config = load_config(tenant.config)
    base, edited = _rule_files(tmp_path / "rules", _edited(*PLAN_EDIT))

    def plan(rules: Path, out: Path) -> pipeline.PlanOutcome:
        outcome, _, _ = pipeline.run_plan_stages(config, rules=rules, out=out)
        return outcome

    def preview_of(outcome: pipeline.PlanOutcome) -> str:
        return preview.preview_markdown(outcome.summary, [], plan_dir=outcome.out)

    first = plan(base, tmp_path / "p1")
    with pipeline.open_store(config) as store:
        run = store.start_run("auto", plan_hash=first.plan_hash)
        store.finish_run(run, "completed", {})
    same = plan(base, tmp_path / "p2")
    assert not (same.out / RULES_CHANGE_FILE).exists()
    assert "Rules changed" not in preview_of(same)
    changed = plan(edited, tmp_path / "p3")
    md = preview_of(changed)
    assert "Rules changed" in md and run in md
    assert "2 users' values or scope differ" in md
    copy = changed.out / PREVIOUS_RULES_FILE
    assert copy.read_text() == RULES_TEXT
    command = f"scimflow rules diff {copy} {edited} --config {tenant.config}"
    assert command in md
    proc = scimflow(*command.split()[1:], "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert {u["key"] for u in json.loads(proc.stdout)["users"]} == _group_members("SO Sales")
