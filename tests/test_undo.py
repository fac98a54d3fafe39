"""`scimflow undo RUN_OR_PLAN_HASH`: the inverse plan of an applied run, from the journal, applied only through
`scimflow apply` (subprocess, on the emulators over HTTPS), and the resolution of its reference on a real store."""

from __future__ import annotations

import copy
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.flowkit import FIXTURES, WIDE, Tenant, worked_example_tenant
from tests.flows.memory_writer import MemoryWriter

ROOT = Path(__file__).resolve().parents[1]


def scimflow(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``scimflow ARGS`` as a user would (a child process, output piped, no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "scimflow", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, input=""
    )


def in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``scimflow ARGS`` through the CLI in this process (quicker than a child process; no terminal)."""
    from typer.testing import CliRunner

    from scimflow.cli import app

    result = CliRunner().invoke(app, list(args), input="")
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def plan_hash(out: Path) -> str:
    """summary.json's plan_hash of a plan folder."""
    return str(json.loads((out / "summary.json").read_text())["plan_hash"])


def jsonl_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of out/plan.jsonl, parsed."""
    return [json.loads(line) for line in (out / "plan.jsonl").read_text().splitlines() if line.strip()]


def _by_name(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(u.get("UserName") or "").lower(): u for u in snapshot["users"]}


def _without_licences(user: dict[str, Any]) -> dict[str, Any]:
    """A snapshot user without its licence assignments (SuperOffice's retirement removes them; see below)."""
    out = copy.deepcopy(user)
    out.pop("LicenseOwners", None)
    return out


@pytest.fixture
def worked(tmp_path: Path) -> Iterator[Tenant]:
    """The worked example on fresh emulators (wide guardrails)."""
    with worked_example_tenant(tmp_path / "tenant") as tenant:
        yield tenant


def test_undo_of_the_worked_example_restores_the_snapshot_except_a_user_changed_since(
    worked: Tenant, tmp_path: Path
) -> None:
    """plan → apply → one user edited in SuperOffice → `undo RUN` (exit 2) → `apply --approve`: the snapshot is
    the one before the apply (created users retired), and the edited user is held with its value untouched."""
    from scimflow.config import load_config
    from scimflow.connectors.superoffice import SuperOfficeTarget

    before = worked.so_snapshot()
    out = tmp_path / "plan"
    assert in_process("plan", "--config", str(worked.config), "--out", str(out)).returncode == 2
    h = plan_hash(out)
    done = in_process("apply", str(out), "--config", str(worked.config), "--approve", h, "--direct")
    assert done.returncode == 0, done.stdout + done.stderr
    journal = in_process("journal", "--config", str(worked.config), "--plan", h[:12], "--json")
    (run_id,) = {r["run_id"] for r in json.loads(journal.stdout)}

    per = _by_name(worked.so_snapshot())["per.berg@contoso.com"]
    cfg = load_config(worked.config)
    with SuperOfficeTarget(cfg.require_superoffice(), ca_bundle=cfg.ca_bundle) as so:
        so.update_user(
            per["AssociateId"], {"title": {"from": "HR Advisor", "to": "Chief HR Advisor"}}, so.read_reference()
        )
    edited = worked.so_snapshot()

    undo_dir = tmp_path / "undo"
    proc = scimflow("undo", run_id, "--config", str(worked.config), "--out", str(undo_dir), "--plans", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert worked.so_snapshot() == edited  # undo itself writes nothing
    rows = {r["key"]: r for r in jsonl_rows(undo_dir)}
    assert rows["kari.nordmann@contoso.com"]["action"] == "update"
    assert rows["kari.nordmann@contoso.com"]["changes"]["role"] == {"from": "Manager", "to": "Sales"}
    assert rows["kari.nordmann@contoso.com"]["changes"]["secondary_groups"] == {"from": ["Sales Norway"], "to": []}
    assert rows["sara.lind@contoso.com"]["action"] == "reactivate"
    assert rows["ola.hansen@contoso.com"]["action"] == "retire"
    assert rows["ola.hansen@contoso.com"]["changes"] == {"active": {"from": True, "to": False}}
    held = rows["per.berg@contoso.com"]
    assert held["action"] == "conflict" and held["changes"] == {} and "title" in held["reason"]
    assert "? conflict (not applied) (1)" in proc.stdout.splitlines()
    assert h in proc.stderr and run_id in proc.stderr
    assert "held (drifted), not reversed: per.berg@contoso.com (create; changed since the run: title)" in proc.stderr
    undo_hash = plan_hash(undo_dir)
    assert undo_hash[:12] in proc.stderr

    wrong = ("0" if undo_hash[0] != "0" else "1") + undo_hash[1:]
    refused = in_process("apply", str(undo_dir), "--config", str(worked.config), "--approve", wrong, "--direct")
    assert refused.returncode == 1 and worked.so_snapshot() == edited

    applied = scimflow("apply", str(undo_dir), "--config", str(worked.config), "--approve", undo_hash, "--direct")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied 3, already done 0, held 0, drifted 0, failed 0; verified 3 of 3" in applied.stdout
    now, then = _by_name(worked.so_snapshot()), _by_name(before)
    assert now["kari.nordmann@contoso.com"] == then["kari.nordmann@contoso.com"]
    # Sara is back with the licences MakeRetired removed (the apply journalled them just before retiring her)
    assert now["sara.lind@contoso.com"] == then["sara.lind@contoso.com"]
    assert now["integration@contoso.com"] == then["integration@contoso.com"]
    assert now["ola.hansen@contoso.com"]["Deleted"] is True  # a created user is retired, never deleted
    assert now["per.berg@contoso.com"]["Deleted"] is False
    assert now["per.berg@contoso.com"]["Person"]["Title"] == "Chief HR Advisor"  # held: never overwritten

    again = in_process(
        "undo", h[:8], "--config", str(worked.config), "--out", str(tmp_path / "again"), "--plans", str(tmp_path)
    )
    assert again.returncode == 2, again.stdout + again.stderr  # only per.berg is left, held
    assert [r["action"] for r in jsonl_rows(tmp_path / "again")] == ["conflict"]
    assert "already as before the run (nothing to do): 3" in again.stderr


def test_undo_refuses_a_wrong_unknown_or_ambiguous_reference(tmp_path: Path) -> None:
    """A reference too short, not hex, unknown, or naming two plans is refused naming the problem; a run id
    and a plan-hash prefix resolve to the plan (a real SQLite store)."""
    from scimflow.state import StateStore
    from scimflow.undo import UndoError, resolve

    a, b = "abcdef12" + "0" * 56, "abcdef12" + "1" * 56
    with StateStore(f"sqlite:///{tmp_path / 'state' / 'state.db'}") as store:
        run_a = store.start_run("apply", plan_hash=a)
        store.journal_begin(a, [{"key": "x@contoso.com", "action": "update"}], run_id=run_a)
        store.journal_begin(b, [{"key": "y@contoso.com", "action": "update"}])
        empty = store.start_run("preview")
        assert resolve(store, run_a).plan_hash == a and resolve(store, run_a).runs == (run_a,)
        assert resolve(store, a[:9]).plan_hash == a and resolve(store, b[:9].upper()).plan_hash == b
        cases = {
            "abcdef1": "first 8 or more",
            "not-a-hash!": "give a run id or a plan hash",
            "0123456789": "no run and no journalled plan starts with",
            "abcdef12": "is ambiguous",
            empty: "recorded no plan",
        }
        for ref, message in cases.items():
            with pytest.raises(UndoError, match=message):
                resolve(store, ref)


def test_undo_cli_refuses_a_wrong_hash_with_exit_1(worked: Tenant, tmp_path: Path) -> None:
    """`scimflow undo` of a hash no run applied exits 1 with the reason on stderr and writes no plan."""
    out = tmp_path / "undo"
    proc = scimflow("undo", "f" * 64, "--config", str(worked.config), "--out", str(out))
    assert proc.returncode == 1 and "no run and no journalled plan starts with" in proc.stderr
    assert not out.exists()


def test_inverse_of_each_action() -> None:
    """Updates are swapped, creates retired, retirements reactivated, remove_plan restored by an update, and a
    SCIM reactivation retired by `active` alone."""
    from scimflow.undo import inverse_of

    upd = inverse_of("update", {"title": {"from": "A", "to": "B"}}, target="superoffice")
    assert (upd.action, upd.changes, upd.expect, upd.before) == (
        "update",
        {"title": {"from": "B", "to": "A"}},
        {"title": "B"},
        {"title": "A"},
    )
    made = inverse_of(
        "create", {"title": {"from": None, "to": "B"}, "mobile_phone": {"from": None, "to": None}}, target="scim"
    )
    assert made.action == "retire" and made.expect == {"title": "B", "active": True}
    gone = inverse_of("retire", {"active": {"from": True, "to": False}}, target="superoffice")
    assert gone.action == "reactivate" and gone.changes == {"active": {"from": False, "to": True}}
    assert gone.note and "licences" in gone.note
    plan = inverse_of("retire", {"user_plan": {"from": "Sales Premium", "to": None}}, target="superoffice")
    assert plan.action == "update" and plan.changes == {"user_plan": {"from": None, "to": "Sales Premium"}}
    back = {"active": {"from": False, "to": True}, "title": {"from": "A", "to": "B"}}
    assert inverse_of("reactivate", back, target="superoffice").changes == {
        "active": {"from": True, "to": False},
        "title": {"from": "B", "to": "A"},
    }
    scim = inverse_of("reactivate", back, target="scim")
    assert scim.changes == {"active": {"from": True, "to": False}} and scim.note == "left as they are: title"
    with pytest.raises(ValueError, match="not a change"):
        inverse_of("conflict", {}, target="superoffice")


# --- a SCIM target -------------------------------------------------------------------------------------


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


def _scim_snapshot(host: Any) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(host.ca_bundle))
    with httpx.Client(base_url=host.target_origin, verify=ctx, timeout=30) as c:
        return dict(c.get("/_emulator/snapshot").json())


def _groups_of(snapshot: dict[str, Any], user_id: str) -> set[str]:
    return {g["displayName"] for g in snapshot["groups"] if user_id in {m["value"] for m in g.get("members") or []}}


def test_undo_on_a_scim_target_reverses_memberships_and_deactivates_created_users(
    scim_site: Any, tmp_path: Path
) -> None:
    """On a SCIM target: undoing an update moves the computed-group memberships back (the inverse plan lists
    the group rows); undoing the first apply deactivates the users it created (never deletes them) and holds
    the one whose title was changed in the SCIM service since."""
    from scimflow.config import load_config
    from scimflow.connectors.scim import ScimClient

    config = str(scim_site.config_path)
    first = tmp_path / "first"
    assert in_process("plan", "--config", config, "--out", str(first)).returncode == 2
    done = in_process("apply", str(first), "--config", config, "--approve", plan_hash(first), "--direct")
    assert done.returncode == 0, done.stdout + done.stderr
    users = {u["userName"].lower(): u for u in _scim_snapshot(scim_site)["users"]}
    assert len(users) == 3
    kari, per = users["kari.nordmann@contoso.com"], users["per.berg@contoso.com"]
    kari_groups = _groups_of(_scim_snapshot(scim_site), kari["id"])
    assert "scimflow:role:Manager" in kari_groups

    ctx = ssl.create_default_context(cafile=str(scim_site.ca_bundle))
    with httpx.Client(base_url=scim_site.graph_origin, verify=ctx, timeout=30) as graph:
        graph.patch(f"/_emulator/users/{kari['externalId']}", json={"jobTitle": "Sales Rep"}).raise_for_status()
    second = tmp_path / "second"
    assert in_process("plan", "--config", config, "--out", str(second)).returncode == 2
    done = in_process("apply", str(second), "--config", config, "--approve", plan_hash(second), "--direct")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scimflow:role:Sales" in _groups_of(_scim_snapshot(scim_site), kari["id"])

    back = tmp_path / "undo-second"
    proc = in_process("undo", plan_hash(second), "--config", config, "--out", str(back), "--plans", str(second))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = {(r["action"], r["key"]): r for r in jsonl_rows(back)}
    update = rows[("update", "kari.nordmann@contoso.com")]
    assert update["changes"]["role"] == {"from": "Sales", "to": "Manager"} and update["associate_id"] == kari["id"]
    manager = rows[("update_group", "scimflow:role:Manager")]["changes"]
    assert manager == {"members_added": {"from": None, "to": ["kari.nordmann@contoso.com"]}}
    assert rows[("update_group", "scimflow:role:Sales")]["changes"]["members_removed"]["from"] == [
        "kari.nordmann@contoso.com"
    ]
    done = in_process("apply", str(back), "--config", config, "--approve", plan_hash(back), "--direct")
    assert done.returncode == 0, done.stdout + done.stderr
    now = _scim_snapshot(scim_site)
    assert _groups_of(now, kari["id"]) == kari_groups
    assert next(u for u in now["users"] if u["id"] == kari["id"])["title"] == "Sales Manager"

    cfg = load_config(scim_site.config_path)
    with ScimClient(cfg.require_scim(), ca_bundle=cfg.ca_bundle) as client:
        client.patch_user(per["id"], {"title": "Head of HR"}, {"title": per.get("title")})
    undo_dir = tmp_path / "undo-first"
    proc = in_process("undo", plan_hash(first)[:12], "--config", config, "--out", str(undo_dir), "--plans", str(first))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = {r["key"]: r for r in jsonl_rows(undo_dir)}
    assert rows["per.berg@contoso.com"]["action"] == "conflict" and "title" in rows["per.berg@contoso.com"]["reason"]
    assert {rows[k]["action"] for k in ("ola.hansen@contoso.com", "kari.nordmann@contoso.com")} == {"retire"}
    assert all(isinstance(r["associate_id"], str) for r in rows.values())
    applied = in_process("apply", str(undo_dir), "--config", config, "--approve", plan_hash(undo_dir), "--direct")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    snap = {u["userName"].lower(): u for u in _scim_snapshot(scim_site)["users"]}
    assert len(snap) == 3  # never deleted
    assert snap["ola.hansen@contoso.com"]["active"] is False and snap["kari.nordmann@contoso.com"]["active"] is False
    assert snap["per.berg@contoso.com"].get("active", True) is True
    assert snap["per.berg@contoso.com"]["title"] == "Head of HR"  # held: never overwritten


# --- the core on a real store, through the writer protocol (an in-memory target) ----------------------


def _memory_config(tmp_path: Path, target: str = "scim") -> Any:
    """A config whose target is never contacted (the writer is passed in; no secret is read)."""
    from scimflow.config import Config

    data: dict[str, Any] = {
        "entra": {"tenant_id": "t.example", "client_id": "c", "client_secret": "env:UNUSED_SECRET"},
        "state_url": f"sqlite:///{tmp_path}/state/state.db",
        "out_dir": str(tmp_path / "out"),
        "guardrails": {"max_changes": 1, "max_retire": "100%"},
    }
    if target == "scim":
        data.update(target="scim", scim={"base_url": "https://scim.example/v2", "token": "env:UNUSED_TOKEN"})
    else:
        data["superoffice"] = {
            "webapi_url": "https://so.example/Cust1",
            "login_url": "https://so.example/login",
            "context_identifier": "Cust1",
            "client_secret": "env:UNUSED",
            "system_user_token": "env:UNUSED",
            "private_key": "env:UNUSED",
        }
    return Config.model_validate(data)


def test_build_undo_reverses_only_applied_rows_and_judges_each_against_today(tmp_path: Path) -> None:
    """Through the writer protocol on a real store: applied rows are reversed, a held row is not, a user back
    as before needs nothing, a user changed since is a conflict row, and the budgets hold the classes over them."""
    from scimflow.apply import apply_plan, plan_file_hash
    from scimflow.state import StateStore
    from scimflow.undo import UndoError, build_undo

    cfg = _memory_config(tmp_path)
    writer = MemoryWriter(
        {
            "m1": {"user_name": "ann@x", "title": "Old", "active": True},
            "m2": {"user_name": "bob@x", "active": True},
            "m3": {"user_name": "cid@x", "active": False},
            "m4": {"user_name": "eve@x", "title": "A", "active": True},
        }
    )
    rows = [
        {"action": "update", "key": "ann@x", "associate_id": "m1", "changes": {"title": {"from": "Old", "to": "New"}}},
        {"action": "retire", "key": "bob@x", "associate_id": "m2", "changes": {"active": {"from": True, "to": False}}},
        {"action": "reactivate", "key": "cid@x", "associate_id": "m3", "changes": {"active": {"from": False, "to": True}}},
        {"action": "create", "key": "dan@x", "associate_id": None, "changes": {"user_name": {"from": None, "to": "dan@x"}, "title": {"from": None, "to": "T"}}},
        {"action": "update", "key": "eve@x", "associate_id": "m4", "changes": {"title": {"from": "A", "to": "B"}}},
    ]  # fmt: skip
    folder = tmp_path / "plan"
    folder.mkdir()
    lines = [
        json.dumps({"entra_id": None, "rules": [], "reason": None, **r}, sort_keys=True, separators=(",", ":"))
        for r in rows
    ]
    (folder / "plan.jsonl").write_text("".join(line + "\n" for line in lines))
    h = plan_file_hash(folder)
    (folder / "summary.json").write_text(json.dumps({"plan_hash": h}))
    with StateStore(cfg.state_url) as store:
        apply_plan(cfg, store, folder, h, writer=writer, hold_users=["eve@x"])
        dan = next(uid for uid, u in writer.users.items() if u["user_name"] == "dan@x")
        writer.users[dan]["title"] = "Changed by hand"
        writer.users["m2"]["active"] = True  # bob is back already

        result = build_undo(cfg, store, h[:10], plans=[folder], writer=writer)
        assert result.out.parent == tmp_path / "out" and result.out.name.endswith(f"-undo-{h[:8]}")
        got = {r["key"]: r for r in jsonl_rows(result.out)}
        assert got["ann@x"]["action"] == "update" and got["ann@x"]["changes"] == {"title": {"from": "New", "to": "Old"}}
        assert got["cid@x"]["action"] == "retire" and got["cid@x"]["changes"] == {"active": {"from": True, "to": False}}
        assert got["dan@x"]["action"] == "conflict" and "title" in got["dan@x"]["reason"]
        assert "bob@x" not in got and "eve@x" not in got
        assert result.already == ["bob@x"] and result.not_applied == {"held": 1}
        assert [(x.key, x.why, x.fields) for x in result.held] == [("dan@x", "drifted", ("title",))]
        summary = json.loads((result.out / "summary.json").read_text())
        assert (summary["update"], summary["retire"], summary["conflict"], summary["unchanged"]) == (1, 1, 1, 1)
        assert summary["plan_hash"] == plan_file_hash(result.out) == result.plan_hash
        assert summary["guardrails"]["verdict"] == "over_budget"  # 2 changes, max_changes 1
        assert writer.users["m1"]["title"] == "New"  # undo wrote nothing

        apply_plan(cfg, store, result.out, result.plan_hash, writer=writer)  # the inverse plan is an ordinary plan
        assert (writer.users["m1"]["title"], writer.users["m3"]["active"]) == ("Old", False)
        redo = build_undo(cfg, store, result.plan_hash[:8], out=tmp_path / "redo", writer=writer)  # found in out_dir
        assert {(r["action"], r["key"]) for r in jsonl_rows(redo.out)} == {("update", "ann@x"), ("reactivate", "cid@x")}

        with pytest.raises(UndoError, match="applied to a scim target"):
            build_undo(
                _memory_config(tmp_path, "superoffice"), store, h, out=tmp_path / "x", plans=[folder], writer=writer
            )
        with pytest.raises(UndoError, match="are not in"):
            build_undo(cfg, store, h, out=tmp_path / "y", writer=writer)


def test_a_retirement_with_journalled_licences_is_undone_with_them() -> None:
    """The licences a SuperOffice retirement removed, as journalled, come back with the reactivation."""
    from scimflow.undo import inverse_of

    back = inverse_of(
        "retire", {"active": {"from": True, "to": False}}, target="superoffice", before={"user_plan": "Sales Premium"}
    )
    assert back.action == "reactivate" and back.note is None
    assert back.changes == {"active": {"from": False, "to": True}, "user_plan": {"from": None, "to": "Sales Premium"}}
    assert back.before == {"active": True, "user_plan": "Sales Premium"}
