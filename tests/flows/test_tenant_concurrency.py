"""One apply per tenant at a time: two runs for one tenant started together never write at the same time."""

from __future__ import annotations

import threading
import uuid
from typing import Any
from uuid import UUID

import pytest
from flowkit import params, run_flow_state

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


def _apply_spans(flow_run_id: Any) -> tuple[Any, Any]:
    """The first start and the last end of the run's apply-changes task runs, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="apply-changes")),
        )
    assert tasks, "the run applied nothing"
    return min(t.start_time for t in tasks), max(t.end_time for t in tasks)


def _logs(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return "\n".join(log.message for log in logs)


def test_two_runs_for_one_tenant_never_apply_at_once(worked_example):
    """Started together, the second run waits for the first one's apply (saying so in its log and state
    message), then finds it done."""
    from prefect.client.orchestration import get_client

    from scimflow.config import load_config

    tenant = load_config(worked_example.config).tenant_key
    worked_example.so_settings(latency=0.3)  # an apply of a few seconds, so that two would overlap unguarded
    box: dict[str, Any] = {}

    def run(label: str) -> None:
        try:
            box[label] = run_flow_state(
                params(worked_example, cli_approved=True), flow_run_name=f"{label}-{uuid.uuid4().hex[:8]}"
            )
        except BaseException as exc:  # reported below
            box[f"{label}-error"] = exc

    threads = [threading.Thread(target=run, args=(label,), daemon=True) for label in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not [k for k in box if k.endswith("error")], box
    (_, first), (_, second) = box["one"], box["two"]
    assert (first.exit_code, second.exit_code) == (0, 0)
    spans = sorted([_apply_spans(first.flow_run_id), _apply_spans(second.flow_run_id)])
    assert spans[0][1] <= spans[1][0], f"the applies overlapped: {spans}"
    waited = [
        r for r in (first, second) if f"waiting for another run applying to tenant {tenant}" in _logs(r.flow_run_id)
    ]
    assert len(waited) == 1, "exactly one run waited for the other"
    assert waited[0].report.applied == 0 and waited[0].report.already_done == 4
    with get_client(sync_client=True) as client:
        messages = [st.message or "" for st in client.read_flow_run_states(UUID(waited[0].flow_run_id))]
    assert any(m.startswith("waiting for another run applying to tenant") for m in messages), messages
    users = worked_example.users_by_name()
    assert all(len(users[k]) == 1 for k in ("ola.hansen@contoso.com", "per.berg@contoso.com")), (
        "a user was created twice"
    )
