"""A realistic tenant for the browser tests and the docs' screenshots: ``contoso``, generated users, own run name.

The docs' screenshots must look like an operator's night, not a test: the tenant is named ``contoso`` (the
config's ``tenant``), its users are generated (joiners, movers, a leaver), and the run keeps the name the
flow gives it (``contoso-approve-<UTC time>``, flows/labels.py) and its tags. So the run is found by its
config, not renamed as ``tests.flows.flowkit.start_paused`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.flows.flowkit import PausedRun, Tenant, start_tenant, stop_tenant

__all__ = ["TENANT", "contoso_tenant", "start_paused_as_named"]

TENANT = "contoso"
#: A small tenant whose plan has every kind of row an approver checks: creates, updates and a retirement.
USERS, SEED = 60, 7
#: Wide guardrails, as the demo's: a first sync of a generated tenant changes most of it.
GUARDRAILS = {"max_retire": "50%", "max_changes": 1_000_000, "min_source_users": 1, "max_source_drop": "50%"}


@contextmanager
def contoso_tenant(folder: Path) -> Iterator[Tenant]:
    """A generated tenant on fresh emulators, its config naming the tenant ``contoso``; stopped afterwards."""
    from scimflow.emulators.generate import generate_tenant

    graph, so = generate_tenant(USERS, SEED, domain="contoso.com")
    tenant = start_tenant(folder, graph, so, guardrails=GUARDRAILS)
    try:
        data = yaml.safe_load(tenant.config.read_text(encoding="utf-8"))
        data["tenant"] = TENANT
        tenant.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        yield tenant
    finally:
        stop_tenant(tenant)


def start_paused_as_named(p: Any, timeout: float = 120) -> PausedRun:
    """Start the sync flow in a thread under the name it gives itself; wait until it is paused for the form.

    The run is the newest ``<tenant>-<mode>-…`` run whose parameters name ``p``'s config.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.states import result_of
    from flows.sync import sync_users

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["state"] = sync_users(p, return_state=True)
            box["result"] = result_of(box["state"])
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wanted = FlowRunFilter(name=FlowRunFilterName(like_=f"{TENANT}-{p.mode}-"))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=wanted, sort=FlowRunSort.START_TIME_DESC, limit=20)
            ours = [r for r in runs if (r.parameters.get("params") or {}).get("config") == p.config]
            if ours and ours[0].state is not None and ours[0].state.is_paused():
                return PausedRun(id=ours[0].id, thread=thread, box=box)
            if "error" in box or "result" in box:
                break
            time.sleep(0.3)
    msg = f"the {TENANT} run of {p.config} never paused: {box}"
    raise AssertionError(msg)
