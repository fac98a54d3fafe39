"""prefect.yaml as committed: `prefect --no-prompt deploy --all` from a fresh copy of the repository, then a
process worker runs the on-demand deployment once, paused for approval and approved through the REST API."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from scimflow.commands.sync_cmd import prefect_env
from tests.flows.approvalkit import approve_input_via
from tests.flows.flowkit import wait_for

from .nightkit import WIDE, active

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
POOL = "scimflow-process"


def _copy_repository(dest: Path) -> Path:
    """What a fresh clone holds: tracked files plus untracked, not ignored ones (``git ls-files``), copied."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _prefect(*args: str, cwd: Path, api_url: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=cwd,
        env=prefect_env(None, api_url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _secret_through_prefect(tenant, name: str) -> None:
    """Move the SuperOffice app token into a Prefect Secret block; the config keeps only a reference."""
    from prefect.blocks.system import Secret

    Secret(value=(tenant.folder / "superoffice-client-secret").read_text()).save(name, overwrite=True)
    data = yaml.safe_load(tenant.config.read_text())
    data["superoffice"]["client_secret"] = f"prefect-secret:{name}"
    tenant.config.write_text(yaml.safe_dump(data, sort_keys=False))


def _flow_run(api: httpx.Client, run_id: str) -> dict:
    return api.get(f"/flow_runs/{run_id}").raise_for_status().json()


def test_deploy_all_then_a_worker_runs_the_on_demand_deployment(tmp_path, prefect_api, tenant_factory):
    """Both deployments register from a copy of the repo; a `--run-once` worker runs on-demand, approved by REST."""
    repo = _copy_repository(tmp_path / "clone")
    spec = yaml.safe_load((repo / "prefect.yaml").read_text())
    assert not [v for v in _strings(spec) if v.startswith(("/", "~"))], "prefect.yaml holds no absolute path"
    committed = {d["name"]: d for d in spec["deployments"]}
    _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", cwd=repo, api_url=prefect_api.api_url)
    _prefect("--no-prompt", "deploy", "--all", cwd=repo, api_url=prefect_api.api_url)

    t = tenant_factory(guardrails=WIDE)
    _secret_through_prefect(t, f"nightly-test-so-app-token-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=prefect_api.api_url, timeout=30) as api:
        deployments = {
            name: api.get(f"/deployments/name/sync-users/{name}").raise_for_status().json() for name in committed
        }
        for name, entry in committed.items():
            assert deployments[name]["entrypoint"] == entry["entrypoint"]
            assert deployments[name]["work_pool_name"] == POOL
        nightly = deployments["nightly"]
        assert nightly["parameters"]["params"]["mode"] == "auto"
        (nightly_schedule,) = nightly["schedules"]
        cron = nightly_schedule["schedule"]
        assert (cron["cron"], cron["timezone"], nightly_schedule["active"]) == ("0 2 * * *", "Europe/Oslo", True)
        assert deployments["on-demand"]["parameters"]["params"]["mode"] == "approve"
        assert str(repo) in str(deployments["on-demand"]["pull_steps"]), "runs from the folder it was deployed from"
        # Auto-sync off, the way docs/nightly.md says (pause the nightly schedule); on-demand is unaffected.
        _prefect(
            "deployment", "schedule", "pause", "sync-users/nightly", nightly_schedule["id"],
            cwd=repo, api_url=prefect_api.api_url,
        )  # fmt: skip
        nightly_now = api.get(f"/deployments/{nightly['id']}").raise_for_status().json()
        assert [s["active"] for s in nightly_now["schedules"]] == [False]

        run = (
            api.post(
                f"/deployments/{deployments['on-demand']['id']}/create_flow_run",
                json={"parameters": {"params": {"config": str(t.config), "mode": "approve", "poll_interval": 1}}},
            )
            .raise_for_status()
            .json()
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
            cwd=tmp_path,
            env=prefect_env(None, prefect_api.api_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its flow-run child goes with it if the test fails
        )
        try:
            wait_for(lambda: _flow_run(api, run["id"])["state"]["type"] in {"PAUSED", "FAILED", "CRASHED"}, 120, 0.5)
            assert _flow_run(api, run["id"])["state"]["type"] == "PAUSED"
            assert t.so_stats()["writes"] == 0, "nothing is applied before approval"
            resumed = api.post(
                f"/flow_runs/{run['id']}/resume",
                json={"run_input": approve_input_via(api, run["id"], comment="deployed run")},
            ).json()
            assert resumed["status"] == "ACCEPT", resumed
            out, _ = worker.communicate(timeout=120)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        assert worker.returncode == 0, out
        wait_for(lambda: _flow_run(api, run["id"])["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"}, 30, 0.5)
        assert _flow_run(api, run["id"])["state"]["type"] == "COMPLETED", out
    assert active(t, "ola.hansen@contoso.com") and not active(t, "sara.lind@contoso.com")
