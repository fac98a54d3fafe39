"""flows/tenant_slot.py's TenantSlot on the session's real Prefect server: asked for early, held, given back.

A run that applies unattended asks for the tenant's slot in the background as soon as it has planned;
these tests check that the slot is held exactly while it should be, and that a slot asked for and then
not used (the run ended first, or another run held it) is given back, never leaked.
"""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


def _active(tenant: str) -> int:
    from flows.prefect_client import api_client
    from flows.tenant_slot import limit_name

    with api_client() as client:
        return int(client.read_global_concurrency_limit_by_name(limit_name(tenant)).active_slots)


def _tenant() -> str:
    return f"slot-{time.monotonic_ns()}"


def test_a_slot_asked_for_early_is_held_in_the_block_and_given_back_after():
    from prefect import flow
    from prefect.exceptions import ObjectNotFound

    from flows.tenant_slot import TenantSlot

    tenant = _tenant()

    @flow
    def run() -> list[int]:
        slot = TenantSlot(tenant)
        slot.request()
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:  # acquired in the background, before anyone waits for it
            try:
                if _active(tenant) == 1:
                    break
            except ObjectNotFound:  # the limit is created by the background request
                pass
            time.sleep(0.05)
        seen.append(_active(tenant))
        with slot.held():
            seen.append(_active(tenant))
        seen.append(_active(tenant))
        slot.release()  # a second release does nothing
        return seen

    assert run() == [1, 1, 0]


def test_a_slot_asked_for_and_never_used_is_given_back():
    from prefect import flow

    from flows.tenant_slot import TenantSlot

    tenant = _tenant()

    @flow
    def run() -> None:
        slot = TenantSlot(tenant)
        slot.request()
        slot.release()  # e.g. the run ended before its apply

    run()
    assert _active(tenant) == 0


def test_a_request_waiting_for_another_run_stops_when_released_and_takes_nothing():
    """Run B asks early while run A holds the slot; B ends without applying: B's request stops, and once A
    is done the slot is free (B did not take it after giving it back)."""
    from prefect import flow

    from flows.tenant_slot import TenantSlot, tenant_apply_slot

    tenant = _tenant()
    a_holds, b_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    @flow
    def run_a() -> None:
        with tenant_apply_slot(tenant):
            a_holds.set()
            assert b_done.wait(60)
            time.sleep(1.5)  # B's request would poll (every second) and take the slot here if it still ran

    @flow
    def run_b() -> None:
        slot = TenantSlot(tenant, wait_seconds=60)
        slot.request()
        time.sleep(0.5)  # it waits: A holds the slot
        slot.release()

    def a() -> None:
        try:
            run_a()
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=a, daemon=True)
    t.start()
    assert a_holds.wait(60)
    run_b()
    b_done.set()
    t.join(60)
    assert not errors
    assert _active(tenant) == 0


def test_held_after_a_release_raises_rather_than_writing_without_the_slot():
    from prefect import flow

    from flows.tenant_slot import TenantBusyError, TenantSlot, tenant_apply_slot

    tenant = _tenant()
    entered: list[bool] = []

    @flow
    def run() -> None:
        with tenant_apply_slot(tenant):  # another holder: the request below waits
            slot = TenantSlot(tenant, wait_seconds=60)
            slot.request()
            time.sleep(0.3)
            slot.release()
            with pytest.raises(TenantBusyError, match="released before it was used"):
                with slot.held():
                    entered.append(True)

    run()
    assert entered == []
    assert _active(tenant) == 0
