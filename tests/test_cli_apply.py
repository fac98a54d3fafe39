"""`scimflow plan` (the diff, --json) and `scimflow apply PLAN_DIR` as a user runs them (subprocess, piped),
on the emulators: the worked example, a variant with every action, and a SCIM target."""

from __future__ import annotations

import copy
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.flowkit import FIXTURES, WIDE, Tenant, start_tenant, stop_tenant, worked_example_tenant

ROOT = Path(__file__).resolve().parents[1]
KARI = "6f1c0001-2b3a-4c5d-9e8f-0a1b2c3d0001"
SARA = "6f1c0003-2b3a-4c5d-9e8f-0a1b2c3d0003"
EMPLOYEES = "a0b00004-1111-4222-8333-444455550004"


def user_env(**overrides: str) -> dict[str, str]:
    """This process's environment without ``PREFECT_API_URL`` (the test session sets it; a user who has no
    Prefect server does not, and `scimflow apply` then applies directly), plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, **overrides}


def scimflow(
    *args: str, stdin: str | None = None, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``scimflow ARGS`` as a user would (a child process, output piped), by default without
    ``PREFECT_API_URL`` (:func:`user_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "scimflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        input=stdin,
        env=user_env() if env is None else env,
    )


def plan(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`scimflow plan --config CONFIG --out OUT EXTRA...`."""
    return scimflow("plan", "--config", str(config), "--out", str(out), *extra)


def plan_hash(out: Path) -> str:
    """summary.json's plan_hash of a plan folder."""
    return str(json.loads((out / "summary.json").read_text())["plan_hash"])


def jsonl_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of out/plan.jsonl, parsed."""
    return [json.loads(line) for line in (out / "plan.jsonl").read_text().splitlines() if line.strip()]


# --- the worked example, with every action ------------------------------------------------------------


def _entra_user(n: int, upn: str, **extra: Any) -> dict[str, Any]:
    first, last = upn.split("@")[0].split(".") if "." in upn.split("@")[0] else (upn.split("@")[0], "X")
    user = {
        "id": f"7e2d00{n:02d}-2b3a-4c5d-9e8f-0a1b2c3d00{n:02d}",
        "userPrincipalName": upn,
        "mail": upn,
        "displayName": f"{first.title()} {last.title()}",
        "givenName": first.title(),
        "surname": last.title(),
        "jobTitle": "Consultant",
        "department": "Sales",
        "accountEnabled": True,
        "employeeId": f"20{n:02d}",
        "mobilePhone": None,
        "businessPhones": [],
        "country": "NO",
        "companyName": "Contoso AS",
        "officeLocation": "Oslo",
        "usageLocation": "NO",
    }
    user.update(extra)
    return user


def _so_user(template: dict[str, Any], associate_id: int, user_name: str, email: str, **extra: Any) -> dict[str, Any]:
    user = copy.deepcopy(template)
    user.update({"AssociateId": associate_id, "Name": f"U{associate_id}", "UserName": user_name, **extra})
    user["Person"].update({"PersonId": 200 + associate_id, "Email": email, "Title": "Consultant"})
    return user


def every_action_data() -> tuple[dict[str, Any], dict[str, Any]]:
    """The worked example plus a returning user (reactivate), a duplicated UPN (quarantine) and a user whose
    e-mail two SuperOffice users share (conflict)."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    per = next(u for u in so["users"] if u["UserName"] == "kari.nordmann@contoso.com")
    back = _entra_user(1, "lena.back@contoso.com")
    dup_a = _entra_user(2, "dup.twice@contoso.com")
    dup_b = _entra_user(3, "Dup.Twice@contoso.com", mail="dup.other@contoso.com")
    twin = _entra_user(4, "tor.twin@contoso.com")
    graph["users"] += [back, dup_a, dup_b, twin]
    employees = next(g for g in graph["groups"] if g["id"] == EMPLOYEES)
    employees["members"] += [u["id"] for u in (back, dup_a, dup_b, twin)]
    so["users"] += [
        _so_user(per, 31, "lena.back@contoso.com", "lena.back@contoso.com", Deleted=True),
        _so_user(per, 32, "tor.a@contoso.com", "tor.twin@contoso.com"),
        _so_user(per, 33, "tor.b@contoso.com", "tor.twin@contoso.com"),
    ]
    return graph, so


@pytest.fixture(scope="module")
def every_action(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tenant, Path]]:
    """The every-action variant on fresh emulators, planned once with `scimflow plan` (piped)."""
    folder = tmp_path_factory.mktemp("every")
    graph, so = every_action_data()
    tenant = start_tenant(folder / "tenant", graph, so, rules=FIXTURES / "rules.yaml", guardrails=WIDE)
    try:
        out = folder / "plan"
        proc = plan(tenant.config, out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (folder / "stdout").write_text(proc.stdout)
        (folder / "stderr").write_text(proc.stderr)
        yield tenant, out
    finally:
        stop_tenant(tenant)


def test_plan_prints_the_diff_with_every_action_plain_when_piped(every_action: tuple[Tenant, Path]) -> None:
    """Piped, `scimflow plan` prints each user under its action with values, from → to and reasons, no ANSI."""
    _, out = every_action
    stdout = (out.parent / "stdout").read_text()
    stderr = (out.parent / "stderr").read_text()
    assert "\x1b[" not in stdout and "\x1b[" not in stderr
    rows = jsonl_rows(out)
    assert {r["action"] for r in rows} == {"create", "update", "retire", "reactivate", "quarantine", "conflict"}
    lines = stdout.splitlines()
    assert lines[0] == "Plan: 2 to create, 1 to update, 1 to reactivate, 1 to retire, 2 quarantined, 1 in conflict."
    for heading in ("+ create (2)", "~ update (1)", "↺ reactivate (1)", "- retire (1)"):
        assert heading in lines
    assert "! quarantine (not applied) (2)" in lines and "? conflict (not applied) (1)" in lines
    assert "  + ola.hansen@contoso.com  rules: Employees, Sales" in lines
    assert '      user_plan        "Sales Premium"' in lines
    assert "  ~ kari.nordmann@contoso.com  #11  rules: Employees, Sales, Managers" in lines
    assert '      role             "Sales" → "Manager"' in lines
    assert any(line.startswith("  ↺ lena.back@contoso.com  #31") for line in lines)
    assert "  - sara.lind@contoso.com  #12: disabled in Entra ID" in lines
    quarantined = [line for line in lines if line.startswith("  ! dup.twice@contoso.com")]
    assert len(quarantined) == 2 and all("duplicate" in line for line in quarantined)
    conflict = next(line for line in lines if line.startswith("  ? tor.twin@contoso.com"))
    assert conflict.split(": ", 1)[1]  # with its reason
    # every row of plan.jsonl is on stdout; the counts, the hash and the folder are on stderr
    assert all(f" {r['key']}" in stdout for r in rows)
    assert plan_hash(out)[:12] in stderr and str(out) in stderr and str(out) not in stdout


def test_plan_json_is_exactly_the_plan_rows(every_action: tuple[Tenant, Path], tmp_path: Path) -> None:
    """`plan --json` prints one JSON array equal to plan.jsonl's rows, and nothing else on stdout."""
    tenant, _ = every_action
    out = tmp_path / "json-plan"
    proc = plan(tenant.config, out, "--json")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout) == jsonl_rows(out)
    assert len(json.loads(proc.stdout)) == 8


def test_plan_limit_cuts_each_section_with_a_count(every_action: tuple[Tenant, Path], tmp_path: Path) -> None:
    """`plan --limit 1` shows one user per action and counts the rest."""
    tenant, _ = every_action
    proc = plan(tenant.config, tmp_path / "cut", "--limit", "1")
    assert proc.returncode == 2, proc.stderr
    assert "  … and 1 more (create): see plan.jsonl" in proc.stdout.splitlines()
    assert "  … and 1 more (quarantine): see plan.jsonl" in proc.stdout.splitlines()
    assert "ola.hansen" in proc.stdout and "per.berg" not in proc.stdout


def test_apply_of_the_every_action_plan_reactivates_and_leaves_quarantine_alone(
    every_action: tuple[Tenant, Path],
) -> None:
    """Applying the every-action plan writes the four change rows (the return included) and never the
    quarantined or conflicting users; exit 0 since every change was applied."""
    tenant, out = every_action
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", plan_hash(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied 5, already done 0, held 0, drifted 0, failed 0; verified 5 of 5" in proc.stdout
    users = tenant.users_by_name()
    assert users["lena.back@contoso.com"][0]["Deleted"] is False
    assert "dup.twice@contoso.com" not in users and "tor.twin@contoso.com" not in users
    assert {u["Person"]["Title"] for u in users["tor.a@contoso.com"] + users["tor.b@contoso.com"]} == {"Consultant"}


# --- applying a saved plan: the worked example ---------------------------------------------------------


#: Guardrails that put the worked example's one retirement over its budget (no retirement allowed).
NO_RETIRE = {"max_retire": 0, "max_changes": 500, "min_source_users": 1}


@pytest.fixture
def worked(tmp_path: Path) -> Iterator[tuple[Tenant, Path]]:
    """The worked example on fresh emulators and its plan written by `scimflow plan`."""
    with worked_example_tenant(tmp_path / "tenant") as tenant:
        out = tmp_path / "plan"
        proc = plan(tenant.config, out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        yield tenant, out


@contextmanager
def over_budget_plan(folder: Path) -> Iterator[tuple[Tenant, Path]]:
    """The worked example under :data:`NO_RETIRE` and its plan, whose guardrails hold the class ``retire``."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    tenant = start_tenant(folder / "tenant", graph, so, rules=FIXTURES / "rules.yaml", guardrails=NO_RETIRE)
    try:
        out = folder / "plan"
        proc = plan(tenant.config, out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        guardrails = json.loads((out / "summary.json").read_text())["guardrails"]
        assert (guardrails["verdict"], guardrails["held"]) == ("over_budget", ["retire"])
        yield tenant, out
    finally:
        stop_tenant(tenant)


def _links(tenant: Tenant) -> dict[str, str]:
    from scimflow.config import load_config
    from scimflow.state import StateStore

    with StateStore(load_config(tenant.config).state_url) as store:
        return dict(store.links(string_ids=True).iter_rows())


def test_apply_a_saved_plan_then_replan_shows_nothing(worked: tuple[Tenant, Path], tmp_path: Path) -> None:
    """`apply PLAN_DIR --approve HASH` writes the plan, journals the approver, links the matched pairs, and a
    re-plan is empty (exit 0)."""
    tenant, out = worked
    h = plan_hash(out)
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", h[:12])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "applied 4, already done 0, held 0, drifted 0, failed 0; verified 4 of 4" in proc.stdout
    users = tenant.users_by_name()
    assert users["kari.nordmann@contoso.com"][0]["Role"]["Value"] == "Manager"
    assert "ola.hansen@contoso.com" in users and "per.berg@contoso.com" in users
    links = _links(tenant)
    assert links[KARI] == "11" and links[SARA] == "12"  # matched pairs from links.jsonl, not only the creates

    journal = scimflow("journal", "--config", str(tenant.config), "--plan", h[:12], "--json")
    assert journal.returncode == 0, journal.stderr
    kari = next(r for r in json.loads(journal.stdout) if r["key"] == "kari.nordmann@contoso.com")
    assert kari["approver"].startswith("cli:") and kari["approved"] is True and kari["status"] == "verified"

    again = plan(tenant.config, tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("No changes.")


def test_a_wrong_hash_is_refused_with_nothing_applied(worked: tuple[Tenant, Path]) -> None:
    """A hash that is not the plan's, too short a prefix, or no approval without a terminal: exit 1, nothing written."""
    tenant, out = worked
    before = tenant.so_snapshot()
    h = plan_hash(out)
    wrong = ("0" if h[0] != "0" else "1") + h[1:]
    for approval in (["--approve", wrong], ["--approve", h[:8]], []):
        proc = scimflow("apply", str(out), "--config", str(tenant.config), *approval, stdin="")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "nothing applied" in proc.stderr or "--approve" in proc.stderr
    assert tenant.so_snapshot() == before
    assert _links(tenant) == {}


def test_a_tampered_plan_is_refused_with_nothing_applied(worked: tuple[Tenant, Path], tmp_path: Path) -> None:
    """plan.jsonl edited after planning (even with summary.json's hash rewritten to match) is refused: exit 1."""
    tenant, out = worked
    before = tenant.so_snapshot()
    h = plan_hash(out)
    edited = (out / "plan.jsonl").read_text().replace('"to":"Manager"', '"to":"Administrator"')
    assert edited != (out / "plan.jsonl").read_text()
    (out / "plan.jsonl").write_text(edited)
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", h)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "changed since it was planned" in proc.stderr and "nothing applied" in proc.stderr

    import hashlib

    summary = json.loads((out / "summary.json").read_text())
    summary["plan_hash"] = hashlib.sha256(edited.encode()).hexdigest()
    (out / "summary.json").write_text(json.dumps(summary))
    proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", h)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is not this plan's hash" in proc.stderr
    assert tenant.so_snapshot() == before


def test_held_actions_are_journalled_not_applied(worked: tuple[Tenant, Path]) -> None:
    """--hold-actions retire applies the rest and keeps Sara (exit 3); a misspelt class or user applies nothing."""
    tenant, out = worked
    before = tenant.so_snapshot()
    cmd = ["apply", str(out), "--config", str(tenant.config), "--approve", plan_hash(out), "--hold-actions"]
    bad = scimflow(*cmd, "retires")
    assert bad.returncode == 1 and "not an action class" in bad.stderr
    typo = scimflow(*cmd[:-1], "--hold-users", "kari.nordman@contoso.com")
    assert typo.returncode == 1 and "not a user of this plan" in typo.stderr
    assert tenant.so_snapshot() == before
    proc = scimflow(*cmd, "retire")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "applied 3, already done 0, held 1" in proc.stdout and "held retire sara.lind@contoso.com" in proc.stdout
    users = tenant.users_by_name()
    assert users["sara.lind@contoso.com"][0]["Deleted"] is False
    assert users["kari.nordmann@contoso.com"][0]["Role"]["Value"] == "Manager"


def test_a_class_over_its_guardrail_budget_is_held_not_applied(tmp_path: Path) -> None:
    """A plan whose retirements are over budget applies the rest and holds Sara's retirement (exit 3), saying so."""
    with over_budget_plan(tmp_path) as (tenant, out):
        proc = scimflow("apply", str(out), "--config", str(tenant.config), "--approve", plan_hash(out))
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "applied 3, already done 0, held 1" in proc.stdout
        assert "held retire sara.lind@contoso.com" in proc.stdout
        assert "held over their guardrail budget: retire" in proc.stderr
        users = tenant.users_by_name()
        assert users["sara.lind@contoso.com"][0]["Deleted"] is False
        assert users["kari.nordmann@contoso.com"][0]["Role"]["Value"] == "Manager"


# --- a SCIM target: group rows ---------------------------------------------------------------------------


@pytest.fixture
def scim_site(tmp_path: Path) -> Iterator[Any]:
    """The worked example's directory with an empty SCIM service as the target (Entra-tolerant dialect)."""
    from scimflow.connectors.graph import clear_app_cache
    from scimflow.emulators.host import EmulatorHost

    graph = json.loads((FIXTURES / "graph.json").read_text())
    host = EmulatorHost(graph, {}, tmp_path / "tenant", rules=FIXTURES / "rules.yaml", guardrails=WIDE, target="scim")
    host.start()
    try:
        yield host
    finally:
        clear_app_cache()
        host.stop()


def test_scim_plan_shows_group_rows_and_apply_writes_them(scim_site: Any, tmp_path: Path) -> None:
    """On a SCIM target `plan` lists the computed groups with their members, and `apply` creates them."""
    out = tmp_path / "plan"
    proc = plan(scim_site.config_path, out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = jsonl_rows(out)
    groups = {r["key"]: r for r in rows if r["action"] == "create_group"}
    assert groups and "\x1b[" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert f"+ create group ({len(groups)})" in lines
    name, row = next(
        (k, r) for k, r in groups.items() if "kari.nordmann@contoso.com" in r["changes"]["members_added"]["to"]
    )
    at = lines.index(f"  + {name}")
    assert "      + kari.nordmann@contoso.com" in lines[at + 1 : at + 1 + len(row["changes"]["members_added"]["to"])]

    done = scimflow("apply", str(out), "--config", str(scim_site.config_path), "--approve", plan_hash(out))
    assert done.returncode == 0, done.stdout + done.stderr
    ctx = ssl.create_default_context(cafile=str(scim_site.ca_bundle))
    with httpx.Client(base_url=scim_site.target_origin, verify=ctx, timeout=30) as c:
        snap = c.get("/_emulator/snapshot").json()
    by_name = {g["displayName"]: g for g in snap["groups"]}
    ids = {u["id"]: u["userName"].lower() for u in snap["users"]}
    for group, r in groups.items():
        members = {ids[m["value"]] for m in by_name[group].get("members") or []}
        assert members == set(r["changes"]["members_added"]["to"])
    assert plan(scim_site.config_path, tmp_path / "again").returncode == 0


def test_copied_plan_folder_keeps_its_links_bound(worked: tuple[Tenant, Path], tmp_path: Path) -> None:
    """links.jsonl written for another plan is refused (exit 1) rather than linking the wrong pairs."""
    tenant, out = worked
    other = tmp_path / "other"
    shutil.copytree(out, other)
    other.chmod(0o700)
    head, *pairs = (other / "links.jsonl").read_text().splitlines()
    assert json.loads(head) == {"plan_hash": plan_hash(out)}
    assert {"entra_id": KARI, "associate_id": 11} in [json.loads(p) for p in pairs]
    (other / "links.jsonl").write_text("\n".join([json.dumps({"plan_hash": "f" * 64}), *pairs]) + "\n")
    proc = scimflow("apply", str(other), "--config", str(tenant.config), "--approve", plan_hash(out))
    assert proc.returncode == 1 and "written for another plan" in proc.stderr
    assert _links(tenant) == {}


def apply_on_a_terminal(
    tenant: Tenant, out: Path, typed: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`scimflow apply PLAN_DIR` with a terminal (a pty) as stdin, ``typed`` answered at the prompt (the
    environment :func:`user_env` unless ``env``)."""
    import pty

    master, slave = pty.openpty()
    try:
        os.write(master, typed.encode() + b"\n")
        return subprocess.run(
            [sys.executable, "-m", "scimflow", "apply", str(out), "--config", str(tenant.config)],
            stdin=slave,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            env=user_env() if env is None else env,
        )
    finally:
        os.close(slave)
        os.close(master)


def test_on_a_terminal_the_prompt_shows_the_hash_and_wants_its_first_12_characters(
    worked: tuple[Tenant, Path],
) -> None:
    """Without --approve on a terminal, the diff and hash are shown; a wrong answer applies nothing, the right one applies."""
    tenant, out = worked
    h = plan_hash(out)
    before = tenant.so_snapshot()
    refused = apply_on_a_terminal(tenant, out, h[1:13])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "~ kari.nordmann@contoso.com  #11" in refused.stdout and h in refused.stderr
    assert "not approved: nothing applied" in refused.stderr
    assert tenant.so_snapshot() == before
    done = apply_on_a_terminal(tenant, out, h[:12].upper())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied 4," in done.stdout
    assert tenant.users_by_name()["sara.lind@contoso.com"][0]["Deleted"] is True


def test_an_unreachable_prefect_api_url_is_an_error_unless_direct(worked: tuple[Tenant, Path]) -> None:
    """With PREFECT_API_URL set where nothing answers, `apply` exits 1 naming the URL (not its password) and
    suggesting --direct, with nothing applied; with --direct it applies in this process."""
    from scimflow.emulators.serve import free_port

    tenant, out = worked
    before = tenant.so_snapshot()
    url = f"http://ops:s3cret-pw@127.0.0.1:{free_port()}/api"
    cmd = ["apply", str(out), "--config", str(tenant.config), "--approve", plan_hash(out)]
    proc = scimflow(*cmd, env=user_env(PREFECT_API_URL=url))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = " ".join(proc.stderr.split())
    assert url.replace("ops:s3cret-pw@", "") in said and "s3cret-pw" not in proc.stdout + proc.stderr
    assert "no Prefect server answers" in said and "nothing applied" in said and "--direct" in said
    assert tenant.so_snapshot() == before and _links(tenant) == {}
    # on a terminal it stops before asking for the hash
    asked = apply_on_a_terminal(tenant, out, plan_hash(out)[:12], env=user_env(PREFECT_API_URL=url))
    assert asked.returncode == 1 and "Type the first" not in asked.stderr, asked.stdout + asked.stderr
    assert tenant.so_snapshot() == before

    done = scimflow(*cmd, "--direct", env=user_env(PREFECT_API_URL=url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "applied 4," in done.stdout and "flow run" not in done.stderr
    assert tenant.users_by_name()["sara.lind@contoso.com"][0]["Deleted"] is True


def test_links_file_is_read_as_strings_and_refused_when_malformed(tmp_path: Path) -> None:
    """links.jsonl gives string pairs for integer and string ids, and a malformed line is refused naming the file."""
    from scimflow.commands.apply_cmd import read_links
    from scimflow.errors import ScimflowError

    h = "a" * 64
    path = tmp_path / "links.jsonl"
    path.write_text(f'{{"plan_hash": "{h}"}}\n{{"entra_id": "e1", "associate_id": 11}}\n')
    assert read_links(tmp_path, h).rows() == [("e1", "11")]
    path.write_text(f'{{"plan_hash": "{h}"}}\n{{"entra_id": "e1", "associate_id": "s-1"}}\n')
    assert read_links(tmp_path, h).rows() == [("e1", "s-1")]
    path.write_text(f'{{"plan_hash": "{h}"}}\n')
    assert read_links(tmp_path, h).is_empty()
    for bad in (
        '{"entra_id": "e1"}',
        '{"entra_id": null, "associate_id": 1}',
        "{oops",
        '{"entra_id": "e", "associate_id": true}',
    ):
        path.write_text(f'{{"plan_hash": "{h}"}}\n{bad}\n')
        with pytest.raises(ScimflowError, match=r"links\.jsonl"):
            read_links(tmp_path, h)
    path.unlink()
    assert read_links(tmp_path, h) is None
