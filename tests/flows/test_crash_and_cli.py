"""A run killed mid-apply resumes without duplicates; the CLI's plan, explain and sync exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flowkit import FIXTURES, start_tenant, stop_tenant, wait_for

from scimflow.config import load_config
from scimflow.pipeline import run_plan_stages

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        r["reason"] = r["reason"] is not None  # wording is free, presence is not
    return rows


def test_plan_cli_on_the_worked_example(worked_example, tmp_path):
    """`scimflow plan` on the emulated worked example writes the expected plan and exits 2."""
    out = tmp_path / "plan"
    cmd = [sys.executable, "-m", "scimflow", "plan", "--config", str(worked_example.config), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert _rows(out / "plan.jsonl") == _rows(FIXTURES / "expected-plan.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((FIXTURES / "expected-summary.json").read_text())
    assert {k: summary[k] for k in expected} == expected


def test_explain_cli_names_the_rules(worked_example):
    """`scimflow explain` shows the rules that matched a user and the planned changes."""
    cmd = [
        sys.executable,
        "-m",
        "scimflow",
        "explain",
        "--config",
        str(worked_example.config),
        "kari.nordmann@contoso.com",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Managers" in proc.stdout and "update" in proc.stdout and "Sales Manager" in proc.stdout


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_run_killed_mid_apply_resumes_without_duplicates(tmp_path):
    """SIGKILL during the apply, then `scimflow sync --approve`: every planned create exists exactly once."""
    from scimflow.emulators.generate import generate_tenant

    graph, so = generate_tenant(60, seed=3)
    wide = {"max_retire": "100%", "max_changes": 10_000, "min_source_users": 1}
    tenant = start_tenant(tmp_path / "tenant", graph, so, guardrails=wide, superoffice_settings={"latency": 0.1})
    try:
        cmd = [sys.executable, "-m", "flows.run", "--config", str(tenant.config), "--approve"]
        first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: tenant.so_stats()["writes"] >= 12 or first.poll() is not None, timeout=120, step=0.05)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        writes_at_kill = tenant.so_stats()["writes"]
        (plan_dir,) = list((tenant.folder / ".scimflow" / "out").iterdir())
        planned = [json.loads(line) for line in (plan_dir / "plan.jsonl").read_text().splitlines()]
        creates = {r["changes"]["user_name"]["to"].lower() for r in planned if r["action"] == "create"}
        assert len(creates) > 20

        tenant.so_settings(latency=0.0)
        env = {**os.environ}
        t0 = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "scimflow", "sync", "--config", str(tenant.config), "--approve"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert time.monotonic() - t0 < 180

        users = tenant.users_by_name()
        assert creates <= set(users), sorted(creates - set(users))
        internal = [u for u in tenant.so_snapshot()["users"] if u["Type"] == "InternalAssociate" and u["UserName"]]
        names = [u["UserName"].lower() for u in internal]
        assert len(names) == len(set(names)), "a user was created twice"
        assert tenant.so_stats()["writes"] > 0 and writes_at_kill >= 12

        outcome, _, _ = run_plan_stages(load_config(tenant.config), out=tmp_path / "replan")
        assert outcome.change_rows == 0
    finally:
        stop_tenant(tenant)
