"""One apply per tenant at a time: a Prefect global concurrency limit ``scimflow-tenant-<key>`` of one slot.

The slot is held **only while the run writes** (its chunks, both approval rounds), not from plan to apply:

- a run paused for approval (up to hours) holds nothing, so it never blocks the tenant's nightly run;
- two runs whose plans were made before either applied are still safe: the second one's apply re-reads every
  row before writing it (the drift check) and holds as drifted, or counts as already done, what the first
  one changed, so neither overwrites the other;
- a run whose process was killed holds its slot only until its lease expires (:data:`LEASE_SECONDS`, 60 s:
  the holder renews it while alive).

A run that finds the slot taken logs that it waits for the other run (and says so in its state message),
then waits up to :data:`WAIT_SECONDS` (``SCIMFLOW_TENANT_WAIT_SECONDS``); after that it fails with a message
naming the tenant, nothing applied. The limit is created on first use (one slot, active).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Running

from scimflow.errors import ScimflowError

__all__ = ["LEASE_SECONDS", "WAIT_SECONDS", "TenantBusyError", "limit_name", "tenant_apply_slot"]

#: How long a run waits for the tenant's slot before giving up (seconds).
WAIT_SECONDS = float(os.environ.get("SCIMFLOW_TENANT_WAIT_SECONDS", "3600"))
#: The slot's lease: renewed by the holder while it runs; a killed holder's slot frees after this. The
#: server's minimum: Prefect has no call to release another holder's lease, so a run that finds the holder
#: dead (tasks/plan.py) still waits out the rest of it.
LEASE_SECONDS = 60.0


class TenantBusyError(ScimflowError):
    """Another run kept applying to this tenant for longer than this run would wait."""


def limit_name(tenant_key: str) -> str:
    """The global concurrency limit of one tenant."""
    return f"scimflow-tenant-{tenant_key}"


def _ensure_limit(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _say_waiting(message: str) -> None:
    """Log that the run waits, and put it in the run's state message (the runs list shows it)."""
    get_run_logger().warning(message)
    if flow_run.id is None:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Running(message=message))


@contextmanager
def tenant_apply_slot(tenant_key: str, *, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the tenant's one apply slot for the block; wait for it (saying so) when another run holds it."""
    name = limit_name(tenant_key)
    wait = WAIT_SECONDS if wait_seconds is None else wait_seconds
    _ensure_limit(name)
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None

    def slot(timeout: float) -> AbstractContextManager[None]:
        return concurrency(
            name, occupy=1, timeout_seconds=timeout, lease_duration=LEASE_SECONDS, holder=holder, strict=True
        )

    with ExitStack() as stack:
        try:
            stack.enter_context(slot(1.0))
        except TimeoutError:
            _say_waiting(f"waiting for another run applying to tenant {tenant_key} (up to {wait:.0f} s)")
            try:
                stack.enter_context(slot(wait))
            except TimeoutError:
                msg = f"tenant {tenant_key}: another run was still applying after {wait:.0f} s; nothing applied"
                raise TenantBusyError(msg) from None
            get_run_logger().info("the other run finished; applying to tenant %s", tenant_key)
        yield
