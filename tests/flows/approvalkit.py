"""Answering the sync run's approval form as the Prefect UI does: with the plan hash the form shows."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

__all__ = [
    "APPROVER",
    "approve_input",
    "approve_input_via",
    "form_description",
    "form_schema",
    "paused_keyset",
    "wait_paused_again",
]

#: The name the tests enter in the form's ``approver`` field.
APPROVER = "tester@contoso.com"


def form_schema(run_id: uuid.UUID | str) -> dict[str, Any]:
    """The JSON schema of the form the paused run waits for (what the UI renders, defaults pre-filled)."""
    from prefect.client.orchestration import get_client
    from prefect.input.actions import read_flow_run_input

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(str(run_id))).state
    assert state is not None and state.is_paused(), f"flow run {run_id} is not paused"
    keyset = state.state_details.run_input_keyset
    assert keyset, f"flow run {run_id} waits for no input"
    schema: Any = read_flow_run_input(keyset["schema"], flow_run_id=uuid.UUID(str(run_id)))
    return json.loads(schema) if isinstance(schema, str) else dict(schema)


def approve_input(run_id: uuid.UUID | str, **values: Any) -> dict[str, Any]:
    """A run_input approving the paused run's plan: ``approve``, the form's pre-filled ``plan_hash`` and an
    ``approver``, plus ``values`` (which may override any of them)."""
    plan_hash = form_schema(run_id)["properties"]["plan_hash"]["default"]
    return {"approve": True, "approver": APPROVER, "plan_hash": plan_hash, **values}


def _paused_keyset(run_id: uuid.UUID | str) -> dict[str, str] | None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(str(run_id))).state
    if state is None or not state.is_paused():
        return None
    return dict(state.state_details.run_input_keyset or {}) or None


def form_description(run_id: uuid.UUID | str) -> str:
    """The description the paused run's form shows (markdown)."""
    from prefect.input.actions import read_flow_run_input

    keyset = _paused_keyset(run_id)
    assert keyset, f"flow run {run_id} is not paused for input"
    return str(read_flow_run_input(keyset["description"], flow_run_id=uuid.UUID(str(run_id))) or "")


def wait_paused_again(run_id: uuid.UUID | str, before: dict[str, str] | None, timeout: float = 60) -> bool:
    """Wait until the run is paused for a form other than ``before``'s (True) or has left paused for good
    (False: it ended)."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keyset = _paused_keyset(run_id)
        if keyset and keyset != before:
            return True
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(uuid.UUID(str(run_id))).state
        if state is not None and state.is_final():
            return False
        time.sleep(0.3)
    msg = f"flow run {run_id} neither paused again nor ended within {timeout} s"
    raise AssertionError(msg)


def paused_keyset(run_id: uuid.UUID | str) -> dict[str, str] | None:
    """The keyset of the form the run is paused for (``None`` when it is not paused)."""
    return _paused_keyset(run_id)


def approve_input_via(api: httpx.Client, run_id: uuid.UUID | str, **values: Any) -> dict[str, Any]:
    """:func:`approve_input` read through a REST client of any Prefect server (``base_url`` its API URL),
    as a UI or script would: the paused state's form schema, its pre-filled ``plan_hash``."""
    state = api.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]
    keyset = (state.get("state_details") or {}).get("run_input_keyset") or {}
    assert state["type"] == "PAUSED" and keyset, f"flow run {run_id} is not paused for input"
    schema = json.loads(api.get(f"/flow_runs/{run_id}/input/{keyset['schema']}").raise_for_status().text)
    if isinstance(schema, str):  # stored JSON-encoded once more by some clients
        schema = json.loads(schema)
    plan_hash = schema["properties"]["plan_hash"]["default"]
    return {"approve": True, "approver": APPROVER, "plan_hash": plan_hash, **values}
