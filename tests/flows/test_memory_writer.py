"""The apply engine through the writer protocol alone: an in-memory writer (tests/flows/memory_writer.py),
a real SQLite state store, plans written as ``plan.jsonl`` files, :func:`scimflow.apply.apply_plan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from memory_writer import MemoryWriter

from scimflow.apply import PlanChangedError, apply_plan, plan_file_hash
from scimflow.config import Config
from scimflow.state import StateStore


def _config(tmp_path: Path) -> Config:
    """A config whose only use here is the tenant's name (the writer is passed in; no secret is read)."""
    return Config.model_validate(
        {
            "entra": {"tenant_id": "t.example", "client_id": "c", "client_secret": "env:UNUSED_SECRET"},
            "target": "scim",
            "scim": {"base_url": "https://scim.example/v2", "token": "env:UNUSED_TOKEN"},
            "state_url": f"sqlite:///{tmp_path}/state.db",
        }
    )


def _change(field: str, old: Any, new: Any) -> dict[str, Any]:
    return {field: {"from": old, "to": new}}


def _plan(folder: Path, rows: list[dict[str, Any]]) -> str:
    """Write ``rows`` as ``folder/plan.jsonl``; its hash."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"rules": [], "reason": None, **r}, sort_keys=True) for r in rows]
    (folder / "plan.jsonl").write_text("\n".join(lines) + "\n")
    return plan_file_hash(folder)


def _users() -> dict[str, dict[str, Any]]:
    return {
        "m1": {"user_name": "ann@x", "title": "Old", "active": True},
        "m2": {"user_name": "bob@x", "title": "Staff", "active": True},
        "m3": {"user_name": "cid@x", "title": "Gone", "active": False},
    }


def _rows() -> list[dict[str, Any]]:
    creates = [
        {
            "action": "create",
            "key": f"new{i}@x",
            "entra_id": f"e-new{i}",
            "changes": {"user_name": {"from": None, "to": f"New{i}@x"}, "title": {"from": None, "to": "Fresh"}},
        }
        for i in range(5)
    ]
    return [
        *creates,
        {
            "action": "update",
            "key": "ann@x",
            "entra_id": "e-ann",
            "associate_id": "m1",
            "changes": _change("title", "Old", "New"),
        },
        {
            "action": "retire",
            "key": "bob@x",
            "entra_id": "e-bob",
            "associate_id": "m2",
            "changes": _change("active", True, False),
        },
        {
            "action": "reactivate",
            "key": "cid@x",
            "entra_id": "e-cid",
            "associate_id": "m3",
            "changes": {**_change("active", False, True), **_change("title", "Gone", "Back")},
        },
        {"action": "quarantine", "key": "bad@x", "reason": "no user name"},
    ]


def test_creates_updates_retires_and_reactivations_through_the_protocol(tmp_path: Path) -> None:
    """Every change row reaches the writer, is read back as verified, and creates are linked by their string ids."""
    config, writer = _config(tmp_path), MemoryWriter(_users(), concurrency=3)
    plan_hash = _plan(tmp_path / "plan", _rows())
    with StateStore(config.state_url) as store:
        report = apply_plan(config, store, tmp_path / "plan", plan_hash, writer=writer)
        links = store.links(string_ids=True)
        journal = store.journal(plan_hash)
    assert (report.planned, report.applied, report.verified, report.failed, report.drifted) == (8, 8, 8, 0, 0)
    assert writer.users["m1"]["title"] == "New"
    assert writer.users["m2"]["active"] is False
    assert writer.users["m3"] == {"user_name": "cid@x", "title": "Back", "active": True}
    created = {r.key: r.associate_id for r in report.rows if r.action == "create"}
    assert sorted(created.values()) == ["m4", "m5", "m6", "m7", "m8"]
    assert dict(links.iter_rows()) == {f"e-new{i}": created[f"new{i}@x"] for i in range(5)}
    assert set(journal["status"].to_list()) == {"verified"}
    assert journal.filter(pl.col("key") == "ann@x")["associate_id"].to_list() == ["m1"]
    assert "bad@x" not in journal["key"].to_list()  # quarantine rows are never applied
    assert writer.max_in_flight <= 3
    assert [c for c, _ in writer.calls][-1] == "read_users" and ("finish_chunk", None) in writer.calls
    assert not writer.closed  # a writer passed in is the caller's to close


def test_drift_is_held_and_a_gone_user_is_drifted(tmp_path: Path) -> None:
    """A user changed since the plan (neither its from nor its to) is held, naming the field; a gone one too."""
    config = _config(tmp_path)
    users = _users()
    users["m1"]["title"] = "Changed by hand"
    del users["m2"]
    writer = MemoryWriter(users)
    plan_hash = _plan(tmp_path / "plan", _rows()[5:7])
    with StateStore(config.state_url) as store:
        report = apply_plan(config, store, tmp_path / "plan", plan_hash, writer=writer)
        status = store.journal_status(plan_hash)
    by_key = {r.key: r for r in report.rows}
    assert by_key["ann@x"].outcome == "drifted" and "title" in (by_key["ann@x"].detail or "")
    assert by_key["bob@x"].outcome == "drifted" and "gone" in (by_key["bob@x"].detail or "")
    assert writer.users["m1"]["title"] == "Changed by hand"  # never overwritten
    assert status == {("ann@x", "update"): "drifted", ("bob@x", "retire"): "drifted"}
    assert not report.complete


def test_holds_conflicts_failures_and_deferred_failures(tmp_path: Path) -> None:
    """Held classes are journalled held; a ConflictError is drifted, a ConnectorError and a deferred failure failed."""
    config = _config(tmp_path)
    writer = MemoryWriter(
        _users(),
        conflict={"ann@x"},
        refuse={"new0@x"},
        deferred_failures={("new1@x", "create"): "group membership refused"},
    )
    plan_hash = _plan(tmp_path / "plan", _rows())
    with StateStore(config.state_url) as store:
        report = apply_plan(config, store, tmp_path / "plan", plan_hash, writer=writer, hold_actions=["retire"])
        status = store.journal_status(plan_hash)
    by_key = {r.key: r for r in report.rows}
    assert by_key["bob@x"].outcome == "held" and writer.users["m2"]["active"] is True
    assert by_key["ann@x"].outcome == "drifted" and "during the write" in (by_key["ann@x"].detail or "")
    assert by_key["new0@x"].outcome == "failed" and by_key["new0@x"].detail == "refused new0@x"
    assert by_key["new1@x"].outcome == "failed" and by_key["new1@x"].detail == "group membership refused"
    assert status[("bob@x", "retire")] == "held"
    assert status[("new1@x", "create")] == "failed"
    assert report.failed == 2 and report.held == 1


@pytest.mark.parametrize("after_write", [False, True], ids=["before-the-write", "after-the-write"])
def test_a_crash_mid_chunk_then_a_rerun_converges(tmp_path: Path, after_write: bool) -> None:
    """A KeyboardInterrupt from the writer ends the apply; rerunning the plan converges without a duplicate."""
    config = _config(tmp_path)
    users = _users()
    plan_hash = _plan(tmp_path / "plan", _rows())
    crashing = MemoryWriter(
        users, concurrency=1, crash_on="new2@x", crash=KeyboardInterrupt(), crash_after_write=after_write
    )
    with StateStore(config.state_url) as store:
        with pytest.raises(KeyboardInterrupt):
            apply_plan(config, store, tmp_path / "plan", plan_hash, writer=crashing)
        assert store.journal_status(plan_hash)[("new2@x", "create")] == "pending"
        assert ("New2@x" in crashing.names()) is after_write  # the crash came before or after the write
        rerun = MemoryWriter(crashing.users, concurrency=2)
        report = apply_plan(config, store, tmp_path / "plan", plan_hash, writer=rerun)
        status = store.journal_status(plan_hash)
    assert report.complete and report.failed == 0
    assert rerun.names() == sorted({*rerun.names()})  # no user name twice
    assert len(rerun.users) == 8
    prepared = [args for name, args in rerun.calls if name == "prepare"]
    assert any("new2@x" in retried for _, retried in prepared)  # the journal had seen the interrupted create
    assert status[("new2@x", "create")] in ("applied", "verified")
    assert rerun.users["m1"]["title"] == "New" and rerun.users["m2"]["active"] is False


def test_a_changed_plan_file_is_refused_before_any_write(tmp_path: Path) -> None:
    """apply_plan reads the plan back and refuses it when its hash is not the approved one; nothing is written."""
    config, writer = _config(tmp_path), MemoryWriter(_users())
    plan_hash = _plan(tmp_path / "plan", _rows())
    with (tmp_path / "plan" / "plan.jsonl").open("a") as f:
        f.write(json.dumps({"action": "retire", "key": "ann@x", "associate_id": "m1"}) + "\n")
    with StateStore(config.state_url) as store, pytest.raises(PlanChangedError, match="changed since it was approved"):
        apply_plan(config, store, tmp_path / "plan", plan_hash, writer=writer)
    assert writer.calls == [] and writer.users == _users()
