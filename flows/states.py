"""The sync run's final Prefect state, and its :class:`~scimflow.apply.SyncResult` read back from a state.

The decision is the core's (:func:`scimflow.apply.final_state_of`); here it only becomes a Prefect state:

- exit 1 (error, unhealthy source, failed writes, plan changed): **Failed**, the reason as the message, the
  data a :class:`~scimflow.apply.SyncFailed` carrying the result (calling the flow raises it);
- exit 3 (held, drifted, rejected, timed out, a preview with changes): **Completed** under its own name
  (``Partial``, ``Rejected``, ``ApprovalTimedOut``, ``Preview``: :data:`~scimflow.apply.PARTIAL_STATE_NAMES`),
  the result as the data; the state change emits ``prefect.flow-run.<name>`` for automations;
- exit 0: **Completed**.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, Running

from flows.prefect_client import api_client
from scimflow.apply import SyncFailed, SyncResult, final_state_of

__all__ = ["final_state", "result_of", "running_after_pause_timeout"]


def final_state(result: SyncResult) -> State[Any]:
    """The flow run's final state for ``result`` (returned by the flow)."""
    end = final_state_of(result)
    if end.kind == "failed":
        return Failed(message=end.message, data=SyncFailed(result))
    return Completed(message=end.message, name=end.name, data=result)


def result_of(state: State[Any]) -> SyncResult:
    """The :class:`SyncResult` of a finished ``sync-users`` run's state (``flow(..., return_state=True)``).

    Raises the run's exception when it failed without one (an error before the run could conclude).
    """
    value = state.result(raise_on_failure=False)
    if isinstance(value, SyncResult):
        return value
    if isinstance(value, SyncFailed):
        return value.result
    if isinstance(value, BaseException):
        raise value
    msg = f"the flow run ended {state.name} without a sync result: {state.message}"
    raise RuntimeError(msg)


def running_after_pause_timeout() -> None:
    """Put the current run, whose approval pause timed out, back in Running so it can end as it concludes.

    The server keeps a run whose pause timed out in Paused and turns any state proposed after it into
    Failed ("never resumed"); the flow, which handles the timeout itself (a rejection, exit 3), forces
    Running as a resume would have, so its own final state (``ApprovalTimedOut``) is the one recorded.
    """
    if flow_run.id is None:
        return
    with api_client() as client:
        client.set_flow_run_state(flow_run.id, Running(message="approval timed out"), force=True)
