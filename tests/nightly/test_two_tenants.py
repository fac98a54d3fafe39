"""Two tenants on one process work pool: one nightly deployment each, on the same schedule, run together by
one worker, each with its own state store; a busy tenant never blocks the other, and one tenant's runs
still apply one at a time."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
import yaml

import scimflow.schemas  # noqa: F401 - pandera/hypothesis imported before any thread runs (see _replan_changes)
from scimflow.commands.sync_cmd import prefect_env
from scimflow.config import load_config
from scimflow.pipeline import open_store, run_plan_stages
from scimflow.state import journal_entries
from scimflow.state._tables import baseline, runs
from tests.flows.flowkit import Tenant, start_tenant, stop_tenant, wait_for

from .nightkit import WIDE
from .test_deploy import POOL, _copy_repository, _prefect

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

#: tenant key -> (mail domain, SuperOffice context identifier, generator seed)
TENANTS = {"contoso": ("contoso.com", "Cust10001", 31), "fabrikam": ("fabrikam.com", "Cust20002", 32)}
CHANGE_ACTIONS = ("create", "update", "retire", "reactivate")


def _start(folder: Path, key: str) -> Tenant:
    """A generated tenant of a dozen users on its own emulator pair; its config names the tenant and keeps
    its state store (SQLite) and plan files in its own folder."""
    from scimflow.emulators.generate import generate_tenant

    domain, ctx, seed = TENANTS[key]
    graph, so = generate_tenant(12, seed=seed, domain=domain)
    tenant = start_tenant(
        folder, graph, so, guardrails=WIDE, context_identifier=ctx, tenant_id=f"{key}.onmicrosoft.com"
    )
    data = yaml.safe_load(tenant.config.read_text())
    data = {"tenant": key, **data, "out_dir": ".scimflow/out"}
    tenant.config.write_text(yaml.safe_dump(data, sort_keys=False))
    return tenant


@pytest.fixture
def two_tenants(tmp_path: Path) -> Iterator[dict[str, Tenant]]:
    """Both tenants on fresh emulators, stopped afterwards."""
    started: dict[str, Tenant] = {}
    try:
        for key in TENANTS:
            started[key] = _start(tmp_path / key, key)
        yield started
    finally:
        for tenant in started.values():
            stop_tenant(tenant)


def _per_tenant_deployments(repo: Path, tenants: dict[str, Tenant]) -> dict[str, dict[str, Any]]:
    """One ``nightly-<tenant>`` deployment per tenant, made from the committed ``nightly`` one (same flow, pool,
    schedule and parameters), appended to the copy's prefect.yaml as docs/operations.md says."""
    spec = yaml.safe_load((repo / "prefect.yaml").read_text())
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly"]
    added = {}
    for key, tenant in tenants.items():
        d = copy.deepcopy(nightly)
        d["name"] = f"nightly-{key}"
        d["parameters"]["params"]["config"] = str(tenant.config)
        added[key] = d
    spec["deployments"] += list(added.values())
    (repo / "prefect.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return added


def _flow_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    return api.get(f"/flow_runs/{run_id}").raise_for_status().json()


def _state(api: httpx.Client, run_id: str) -> tuple[str, str]:
    state = _flow_run(api, run_id)["state"]
    return state["type"], state.get("message") or ""


def _apply_span(api: httpx.Client, run_id: str) -> tuple[datetime, datetime]:
    """The first start and the last end of the run's apply-changes task runs."""
    tasks = (
        api.post(
            "/task_runs/filter",
            json={
                "flow_runs": {"id": {"any_": [run_id]}},
                "task_runs": {"name": {"like_": "apply-changes"}},
            },
        )
        .raise_for_status()
        .json()
    )
    assert tasks, f"flow run {run_id} applied nothing"
    return (
        min(datetime.fromisoformat(t["start_time"]) for t in tasks),
        max(datetime.fromisoformat(t["end_time"]) for t in tasks),
    )


def _replan_changes(tenant: Tenant, out: Path) -> dict[str, int]:
    """The change counts of a fresh full plan. (Validation imports pandera, which imports hypothesis: first
    imported here, mid-test with other threads running, hypothesis's circular imports failed once, so the
    module imports ``scimflow.schemas`` at the top.)"""
    outcome, _, _ = run_plan_stages(load_config(tenant.config), out=out, full=True)
    return {a: int(outcome.summary.get(a, 0)) for a in CHANGE_ACTIONS}


def _store_rows(tenant: Tenant) -> tuple[set[str], set[str], set[str]]:
    """(journal keys, flow run ids of the runs table, tenants with a baseline) of the tenant's own store."""
    with open_store(load_config(tenant.config)) as store:
        keys = {e.key for e in journal_entries(store)}
        with store.engine.connect() as conn:
            flow_runs = {str(r) for r in conn.execute(sa.select(runs.c.flow_run_id)).scalars()}
            with_baseline = {str(r) for r in conn.execute(sa.select(baseline.c.tenant)).scalars()}
    return keys, flow_runs, with_baseline


def _hold_slot(tenant_key: str) -> UUID:
    """Take tenant ``tenant_key``'s apply slot, as a long apply of that tenant would (a 10-minute lease)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    from flows.tenant_slot import limit_name

    with get_client(sync_client=True) as client:
        with suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name(tenant_key), limit=1))
        response = client.increment_concurrency_slots_with_lease([limit_name(tenant_key)], 1, "concurrency", 600)
    return UUID(str(response.json()["lease_id"]))


@pytest.mark.timeout(600)  # three flow-run processes and a worker: about two minutes on a quiet machine
def test_two_tenants_run_side_by_side_on_one_pool(tmp_path, prefect_api, two_tenants):
    """Runs of both tenants' deployments started together by one process worker: fabrikam applies and converges
    while contoso's slot is busy, contoso's two runs apply one after the other, both converge, and each state
    store holds only its own tenant's rows."""
    from flows.tenant_slot import release_lease

    repo = _copy_repository(tmp_path / "clone")
    added = _per_tenant_deployments(repo, two_tenants)
    names = [arg for key in TENANTS for arg in ("--name", f"sync-users/nightly-{key}")]
    busy, free = "contoso", "fabrikam"
    waiting = f"waiting for another run applying to tenant {busy}"
    worker: subprocess.Popen[str] | None = None
    lease: UUID | None = None
    with httpx.Client(base_url=prefect_api.api_url, timeout=30) as api:
        try:
            made = api.post("/work_pools/", json={"name": POOL, "type": "process"})
            assert made.status_code in (201, 409), made.text  # 409: the pool is there already (test_deploy)
            _prefect("--no-prompt", "deploy", *names, cwd=repo, api_url=prefect_api.api_url)
            deployments = {
                key: api.get(f"/deployments/name/sync-users/nightly-{key}").raise_for_status().json() for key in TENANTS
            }
            schedules = {
                key: [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in d["schedules"]]
                for key, d in deployments.items()
            }
            assert schedules[busy] == schedules[free] == [("0 2 * * *", "Europe/Oslo", True)], "the same minute"
            assert {d["work_pool_name"] for d in deployments.values()} == {POOL}
            for key, d in deployments.items():
                assert d["parameters"]["params"]["config"] == added[key]["parameters"]["params"]["config"]
                for s in d["schedules"]:  # the nightly cron must not fire while the test's server lives on
                    api.patch(f"/deployments/{d['id']}/schedules/{s['id']}", json={"active": False}).raise_for_status()

            lease = _hold_slot(busy)
            run_ids = {
                label: api.post(f"/deployments/{deployments[key]['id']}/create_flow_run", json={})
                .raise_for_status()
                .json()["id"]
                for label, key in (("busy-1", busy), ("busy-2", busy), ("free", free))
            }
            worker = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
                cwd=tmp_path,
                env=prefect_env(None, prefect_api.api_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its flow-run children go with it if the test fails
            )

            def free_done_and_busy_waiting() -> bool:
                states = {label: _state(api, rid) for label, rid in run_ids.items()}
                if any(t in {"FAILED", "CRASHED", "CANCELLED"} for t, _ in states.values()):
                    raise AssertionError(f"a run ended badly: {states}")
                return states["free"][0] == "COMPLETED" and all(
                    states[b][0] == "RUNNING" and states[b][1].startswith(waiting) for b in ("busy-1", "busy-2")
                )

            wait_for(free_done_and_busy_waiting, 300, 1)
            free_message = _state(api, run_ids["free"])[1]
            assert _replan_changes(two_tenants[free], tmp_path / "replan-free") == dict.fromkeys(CHANGE_ACTIONS, 0), (
                f"{free} did not converge while {busy} was busy ({free_message})"
            )
            release_lease(str(lease))
            lease = None
            out, _ = worker.communicate(timeout=240)
            assert worker.returncode == 0, out
        finally:
            if lease is not None:
                release_lease(str(lease))
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)  # the worker and its flow-run processes
                worker.wait(10)
        final = {label: _state(api, rid) for label, rid in run_ids.items()}
        assert {t for t, _ in final.values()} == {"COMPLETED"}, final
        spans = sorted(_apply_span(api, run_ids[b]) for b in ("busy-1", "busy-2"))
        assert spans[0][1] <= spans[1][0], f"two runs of tenant {busy} applied at once: {spans}"
        ended = {label: _flow_run(api, rid) for label, rid in run_ids.items()}

    for label, run in ended.items():
        key = free if label == "free" else busy
        assert f"tenant:{key}" in run["tags"] and run["name"].startswith(f"{key}-auto-"), (run["name"], run["tags"])
    for key, tenant in two_tenants.items():
        assert _replan_changes(tenant, tmp_path / f"replan-{key}") == dict.fromkeys(CHANGE_ACTIONS, 0), key
        keys, flow_runs, with_baseline = _store_rows(tenant)
        domain = TENANTS[key][0]
        assert keys and all(k.endswith("@" + domain) for k in keys), f"{key}'s journal holds another tenant's rows"
        mine = {rid for label, rid in run_ids.items() if (label == "free") == (key == free)}
        assert flow_runs == mine, f"{key}'s runs table: {flow_runs}, expected its own flow runs {mine}"
        assert with_baseline == {key}, with_baseline
