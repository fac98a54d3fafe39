"""Helpers of the flow tests: tenants on emulators, running the flow in-process, paused runs."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: Wide guardrails for the worked example (its one retirement is over the default 5 %).
WIDE = {"max_retire": "100%", "max_changes": 500, "min_source_users": 1}

__all__ = [
    "FIXTURES",
    "WIDE",
    "PausedRun",
    "Tenant",
    "params",
    "run_flow",
    "run_flow_state",
    "start_paused",
    "start_tenant",
    "stop_tenant",
    "wait_for",
    "worked_example_tenant",
]


@dataclass
class Tenant:
    """Both emulators serving one tenant, and the config that points at them."""

    host: Any
    config: Path
    folder: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def _client(self) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.host.ca_bundle))
        return httpx.Client(base_url=self.host.superoffice_origin, verify=ctx, timeout=30)

    def so_snapshot(self) -> dict[str, Any]:
        with self._client() as c:
            return c.get("/_emulator/snapshot").json()

    def so_stats(self) -> dict[str, int]:
        with self._client() as c:
            return c.get("/_emulator/stats").json()

    def so_reset_counters(self) -> None:
        with self._client() as c:
            c.post("/_emulator/reset-counters").raise_for_status()

    def so_settings(self, **values: Any) -> None:
        with self._client() as c:
            c.post("/_emulator/settings", json=values).raise_for_status()

    def users_by_name(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for u in self.so_snapshot()["users"]:
            out.setdefault(str(u.get("UserName") or "").lower(), []).append(u)
        return out


def start_tenant(folder: Path, graph: dict[str, Any], so: dict[str, Any], **kwargs: Any) -> Tenant:
    from scimflow.emulators.host import EmulatorHost

    host = EmulatorHost(graph, so, folder, **kwargs).start()
    return Tenant(host=host, config=host.config_path, folder=folder)


@contextmanager
def worked_example_tenant(folder: Path) -> Iterator[Tenant]:
    """The worked example (tests/fixtures) on fresh emulators, with wide guardrails, stopped afterwards."""
    graph = json.loads((FIXTURES / "graph.json").read_text())
    so = json.loads((FIXTURES / "superoffice.json").read_text())
    tenant = start_tenant(folder, graph, so, rules=FIXTURES / "rules.yaml", guardrails=WIDE)
    try:
        yield tenant
    finally:
        stop_tenant(tenant)


def stop_tenant(tenant: Tenant) -> None:
    """Stop the emulators, closing this process's cached msal clients first (else shutdown waits on them)."""
    from scimflow.connectors.graph import clear_app_cache

    clear_app_cache()
    tenant.host.stop()


def params(tenant: Tenant, **kw: Any) -> Any:
    from flows.sync import SyncParams

    kw.setdefault("poll_interval", 1)
    return SyncParams(config=str(tenant.config), **kw)


def run_flow(p: Any) -> Any:
    """Run the sync-users flow in this process and return its SyncResult (whatever its final state)."""
    return run_flow_state(p)[1]


def run_flow_state(p: Any, **options: Any) -> tuple[Any, Any]:
    """Run the sync-users flow in this process (``options``: ``with_options``); return (final state, SyncResult)."""
    from flows.states import result_of
    from flows.sync import sync_users

    state = (sync_users.with_options(**options) if options else sync_users)(p, return_state=True)
    return state, result_of(state)


@dataclass
class PausedRun:
    """A flow run started in a thread and now paused for approval."""

    id: uuid.UUID
    thread: threading.Thread
    box: dict[str, Any]

    def result(self, timeout: float = 90) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow run did not finish"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]

    def final_state(self, timeout: float = 90) -> Any:
        """The run's final Prefect state (after :meth:`result`)."""
        self.result(timeout)
        return self.box["state"]


def start_paused(p: Any, timeout: float = 90) -> PausedRun:
    """Start the flow in a thread under a unique name and wait until it is paused for the form."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.states import result_of
    from flows.sync import sync_users

    name = f"test-{uuid.uuid4().hex[:10]}"
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["state"] = sync_users.with_options(flow_run_name=name)(p, return_state=True)
            box["result"] = result_of(box["state"])
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            if runs and runs[0].state is not None and runs[0].state.is_paused():
                return PausedRun(id=runs[0].id, thread=thread, box=box)
            if "error" in box or "result" in box:
                break
            time.sleep(0.3)
    msg = f"flow run {name} never paused: {box}"
    raise AssertionError(msg)


def wait_for(pred: Callable[[], bool], timeout: float = 60, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            msg = "condition not met in time"
            raise AssertionError(msg)
        time.sleep(step)
