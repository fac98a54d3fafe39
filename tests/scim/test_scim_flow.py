"""A SCIM target through the Prefect flow: guardrails and approval unchanged, and crash safety.

Runs on the session's Prefect server (tests/conftest.py): the flow in this process for the guardrail test,
real ``python -m flows.run`` children SIGKILLed mid-apply for the crash test.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scimflow.config import load_config
from scimflow.pipeline import run_plan_stages
from tests.flows.flowkit import params, run_flow, wait_for

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"max_retire": "100%", "max_changes": 100_000, "min_source_users": 1, "max_source_drop": "90%"}

pytestmark = pytest.mark.prefect


class ScimSite:
    """A generated Entra tenant on the Graph emulator and an empty SCIM emulator, with the config for both."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.config = Path(host.config_path)
        self.ctx = ssl.create_default_context(cafile=str(host.ca_bundle))

    def _client(self, origin: str) -> httpx.Client:
        return httpx.Client(base_url=origin, verify=self.ctx, timeout=30)

    def scim(self, method: str, path: str, **kw: Any) -> Any:
        with self._client(self.host.target_origin) as c:
            r = c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()

    def graph(self, method: str, path: str, **kw: Any) -> None:
        with self._client(self.host.graph_origin) as c:
            c.request(method, path, **kw).raise_for_status()

    def replan_rows(self, out: Path) -> list[dict[str, Any]]:
        outcome, _, _ = run_plan_stages(load_config(self.config), out=out)
        return outcome.plan.rows.to_dicts()


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path, prefect_server: Any) -> Iterator[ScimSite]:
    from scimflow.connectors.graph import clear_app_cache
    from scimflow.emulators.generate import generate_tenant
    from scimflow.emulators.host import EmulatorHost

    guardrails = getattr(request, "param", WIDE)
    graph, _ = generate_tenant(40, seed=11)
    host = EmulatorHost(graph, {}, tmp_path, guardrails=guardrails, target="scim", scim_dialect="entra").start()
    try:
        yield ScimSite(host)
    finally:
        clear_app_cache()
        host.stop()


@pytest.mark.parametrize("site", [{**WIDE, "max_retire": 2}], indirect=True)
def test_a_mass_deactivation_over_budget_is_held(site: ScimSite, tmp_path: Path) -> None:
    """Deactivations count as retirements: over max_retire the class is held, the rest applies, nobody is
    deactivated, and the approval binds to the plan hash the preview showed."""
    first = run_flow(params(site, cli_approved=True))
    assert first.exit_code == 0 and first.report is not None and first.report.applied > 20
    users = site.scim("GET", "/_emulator/snapshot")["users"]
    leavers = [u for u in users if u["active"]][:5]
    for user in leavers:
        site.graph("PATCH", f"/_emulator/users/{user['externalId']}", json={"accountEnabled": False})
    site.graph("PATCH", f"/_emulator/users/{users[-1]['externalId']}", json={"jobTitle": "Chief of Things"})

    night = run_flow(params(site, mode="auto", wait_for_held=False))
    assert night.status == "partial" and night.exit_code == 3
    assert night.guardrails["verdict"] == "over_budget" and night.guardrails["held"] == ["retire"]
    assert night.report is not None and night.report.held == 5 and night.report.applied == 1
    summary = json.loads((Path(night.plan_dir) / "summary.json").read_text())
    assert summary["plan_hash"] == night.plan_hash == night.report.plan_hash
    now = {u["id"]: u for u in site.scim("GET", "/_emulator/snapshot")["users"]}
    assert all(now[u["id"]]["active"] for u in leavers), "a held deactivation was applied"
    assert now[users[-1]["id"]]["title"] == "Chief of Things"


def test_apply_killed_mid_push_converges_without_duplicates_or_lost_memberships(site: ScimSite, tmp_path: Path) -> None:
    """SIGKILLed twice during the initial push, then rerun: one user per userName, every membership there."""
    site.scim("POST", "/_emulator/settings", json={"latency": 0.05})
    kills = []
    for k in (8, 30):
        log = tmp_path / f"run-{k}.log"
        cmd = [sys.executable, "-m", "flows.run", "--config", str(site.config), "--approve", "--poll-interval", "1"]
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                wait_for(
                    lambda k=k, proc=proc: (
                        site.scim("GET", "/_emulator/stats")["writes"] >= k or proc.poll() is not None
                    ),
                    timeout=240,
                    step=0.02,
                )
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if proc.returncode == -signal.SIGKILL:
            kills.append(k)
    assert kills == [8, 30], "a run ended before its kill point"
    site.scim("POST", "/_emulator/settings", json={"latency": 0.0})
    final = run_flow(params(site, cli_approved=True))
    assert final.exit_code == 0, final

    snap = site.scim("GET", "/_emulator/snapshot")
    names = Counter(u["userName"].strip().lower() for u in snap["users"])
    assert [n for n, c in names.items() if c > 1] == [], "a user was created twice"
    assert Counter(g["displayName"] for g in snap["groups"]).most_common(1)[0][1] == 1, "a group made twice"
    assert site.replan_rows(tmp_path / "replan") == [], "a membership or a change was lost"
