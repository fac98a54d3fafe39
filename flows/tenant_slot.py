"""One apply per tenant at a time: a Prefect global concurrency limit ``scimflow-tenant-<key>`` of one slot.

A run that waits for a person holds the slot **only around its writes** (its chunks, each approval round);
a run with no person to wait for holds it from its start to the end of its apply:

- a run paused for approval (up to hours) holds nothing, so it never blocks the tenant's nightly run; a
  run with no person to wait for (``--approve``, auto mode) asks for it when it starts (:class:`TenantSlot`):
  its plan is made against a target no other run is writing to, and the wait for Prefect's answer overlaps
  its reads instead of delaying its first write;
- two runs whose plans were made before either applied are still safe: the second one's apply re-reads every
  row before writing it (the drift check) and holds as drifted, or counts as already done, what the first
  one changed, so neither overwrites the other;
- a run whose process was killed holds its slot until its lease expires (:data:`LEASE_SECONDS`, 60 s: the
  holder renews it while alive), or until the tenant's next run finds it dead and releases the lease.

A run that finds the slot taken logs that it waits for the other run (and says so in its state message),
then waits up to :data:`WAIT_SECONDS` (``SCIMFLOW_TENANT_WAIT_SECONDS``); after that it fails with a message
naming the tenant, nothing applied. The limit is created on first use (one slot, active).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Running

from flows.prefect_client import api_client
from scimflow.errors import ScimflowError

__all__ = [
    "LEASE_LABEL",
    "LEASE_SECONDS",
    "WAIT_SECONDS",
    "TenantBusyError",
    "TenantSlot",
    "limit_name",
    "release_lease",
    "tenant_apply_slot",
]

#: How long a run waits for the tenant's slot before giving up (seconds).
WAIT_SECONDS = float(os.environ.get("SCIMFLOW_TENANT_WAIT_SECONDS", "3600"))
#: The slot's lease: renewed by the holder while it runs; a killed holder's slot frees after this at the
#: latest (the server's minimum), or at once when the tenant's next run finds the holder dead.
LEASE_SECONDS = 60.0
#: The flow run label holding the run's lease id while it holds the slot.
LEASE_LABEL = "scimflow.tenant-lease"
#: How often a waiting run asks for the slot again.
POLL_SECONDS = 1.0


class TenantBusyError(ScimflowError):
    """Another run kept applying to this tenant for longer than this run would wait."""


def limit_name(tenant_key: str) -> str:
    """The global concurrency limit of one tenant."""
    return f"scimflow-tenant-{tenant_key}"


def _ensure_limit(name: str) -> None:
    with api_client() as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _say_waiting(message: str, run_id: UUID | None, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Log that the run waits, and put it in the run's state message (the runs list shows it)."""
    logger.warning(message)
    if run_id is None:
        return
    with api_client() as client:
        client.set_flow_run_state(run_id, Running(message=message))


def _try_acquire(client: SyncPrefectClient, name: str, holder: ConcurrencyLeaseHolder | None) -> UUID | None:
    """The lease of the tenant's slot, or ``None`` while another run holds it (the server answers 423)."""
    try:
        response = client.increment_concurrency_slots_with_lease([name], 1, "concurrency", LEASE_SECONDS, holder=holder)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 423:
            return None
        raise
    return UUID(str(response.json()["lease_id"]))


def release_lease(lease_id: str) -> None:
    """Release a tenant slot's lease (a dead run's, found by the next run); one already gone is fine."""
    with api_client() as client, suppress(ObjectNotFound, httpx.HTTPStatusError):
        client.release_concurrency_slots_with_lease(UUID(lease_id))


def _renew(lease_id: UUID, stop: threading.Event, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    with api_client() as client:
        while not stop.wait(LEASE_SECONDS / 4):
            try:
                client.renew_concurrency_lease(lease_id, LEASE_SECONDS)
            except Exception as exc:  # noqa: BLE001 - keep trying; the lease lasts LEASE_SECONDS
                logger.warning("could not renew the tenant slot's lease: %s", exc)


def _acquire(
    tenant_key: str,
    wait: float,
    run_id: UUID | None,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    cancelled: threading.Event,
    on_busy: Callable[[], None] | None = None,
) -> UUID | None:
    """The tenant slot's lease, after waiting (saying so) while another run holds it; ``None`` if
    ``cancelled`` was set first. ``on_busy``, called once when the slot is found taken, may free it (a
    dead holder's). Raises :class:`TenantBusyError` after ``wait`` seconds."""
    name = limit_name(tenant_key)
    _ensure_limit(name)
    holder = ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None
    deadline = time.monotonic() + wait
    with api_client() as client:
        lease = _try_acquire(client, name, holder)
        if lease is None and on_busy is not None:
            on_busy()
            lease = _try_acquire(client, name, holder)
        if lease is None:
            _say_waiting(
                f"waiting for another run applying to tenant {tenant_key} (up to {wait:.0f} s)", run_id, logger
            )
            while lease is None and time.monotonic() < deadline and not cancelled.is_set():
                cancelled.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                if not cancelled.is_set():
                    lease = _try_acquire(client, name, holder)
            if cancelled.is_set():
                return lease
            if lease is None:
                msg = f"tenant {tenant_key}: another run was still applying after {wait:.0f} s; nothing applied"
                raise TenantBusyError(msg)
            logger.info("the other run finished; applying to tenant %s", tenant_key)
        if run_id is not None:
            client.update_flow_run_labels(run_id, {LEASE_LABEL: str(lease)})
    return lease


class TenantSlot:
    """The tenant's apply slot for one apply round: asked for (:meth:`request`, in the background), held
    (:meth:`held`, waiting for it if need be), released (at the end of :meth:`held`, or by :meth:`release`).

    A run that applies without waiting for a person (``--approve``, auto mode) asks for the slot when it
    starts, so the wait for it (Prefect's lease calls; most of a second when a SQLite-backed server is busy
    recording task runs) overlaps its reads rather than delaying its first write, and gives it back as soon
    as its plan shows nothing to apply. Once acquired, the lease is renewed until released. A run paused
    for approval asks only after the pause (:meth:`held` alone), so a paused run never holds the slot.
    """

    def __init__(
        self, tenant_key: str, *, wait_seconds: float | None = None, on_busy: Callable[[], None] | None = None
    ) -> None:
        self.tenant_key = tenant_key
        self._on_busy = on_busy
        self._wait = WAIT_SECONDS if wait_seconds is None else wait_seconds
        self._cancelled = threading.Event()
        self._stop = threading.Event()
        self._future: Future[UUID | None] | None = None
        self._renewer: threading.Thread | None = None
        self._releasing: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        """Start asking for the slot in the background (once; later calls do nothing)."""
        with self._lock:
            if self._future is not None:
                return
            run_id = UUID(str(flow_run.id)) if flow_run.id is not None else None
            logger = get_run_logger()
            future: Future[UUID | None] = Future()
            context = contextvars.copy_context()  # the run's context: its logger, its client settings

            def work() -> None:
                try:
                    lease = context.run(
                        _acquire, self.tenant_key, self._wait, run_id, logger, self._cancelled, self._on_busy
                    )
                    if lease is not None:
                        self._renewer = threading.Thread(
                            target=context.run, args=(_renew, lease, self._stop, logger),
                            name="tenant-slot-lease", daemon=True,
                        )  # fmt: skip
                        self._renewer.start()
                    future.set_result(lease)
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits in held()
                    future.set_exception(exc)

            self._future = future
            threading.Thread(target=work, name="tenant-slot-request", daemon=True).start()

    @contextmanager
    def held(
        self, *, release_in_background: bool = False, before_release: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """Hold the slot for the block (asking for it now unless :meth:`request` did), then release it;
        ``release_in_background``: without waiting for Prefect's answer (a later :meth:`release` waits);
        ``before_release``: the releasing thread's first job (e.g. the run's last progress update)."""
        self.request()
        assert self._future is not None
        try:
            if self._future.result() is None:  # released before it was acquired
                msg = f"tenant {self.tenant_key}: the apply slot was released before it was used"
                raise TenantBusyError(msg)
            yield
        finally:
            self.release(wait=not release_in_background, first=before_release)

    def release(self, *, wait: bool = True, first: Callable[[], None] | None = None) -> None:
        """Give the slot back (or stop asking for it); safe to call more than once, or never having asked.

        ``wait=False`` returns at once, the lease given back by a thread (the run's writes are done; its
        next steps need not wait for the server); a later call with ``wait=True`` waits for that thread.
        ``first`` runs in that thread before the lease is given back.
        """
        with self._lock:
            future, self._future = self._future, None
            if future is not None:
                self._cancelled.set()
                context = contextvars.copy_context()
                self._releasing = threading.Thread(
                    target=context.run, args=(self._give_back, future, first), name="tenant-slot-release", daemon=True
                )
                self._releasing.start()
            releasing = self._releasing
        if future is None and first is not None:  # nothing asked for: nothing to give back after it
            first()
        if wait and releasing is not None:
            releasing.join(LEASE_SECONDS)

    def _give_back(self, future: Future[UUID | None], first: Callable[[], None] | None) -> None:
        if first is not None:
            try:
                first()
            except Exception as exc:  # noqa: BLE001 - the lease is given back whatever happened before
                get_run_logger().warning("before giving back the tenant slot: %s", exc)
        try:
            lease = future.result()
        except BaseException:  # noqa: BLE001 - never acquired: nothing to give back (held() raised it)
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(10)
        if lease is not None:
            release_lease(str(lease))


@contextmanager
def tenant_apply_slot(tenant_key: str, *, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the tenant's one apply slot for the block; wait for it (saying so) when another run holds it.

    The lease's id is put on the flow run as the label :data:`LEASE_LABEL`, so that the next run, finding
    this one's process gone, can release it at once rather than wait for it to expire.
    """
    with TenantSlot(tenant_key, wait_seconds=wait_seconds).held():
        yield
