"""The apply wiring both flows share: ``sync-users`` (``flows/sync.py``) and ``apply-saved-plan``
(``flows/apply_plan.py``) apply approved rows in chunk task runs and conclude the same way.

- :data:`TASK_RUNNER`: the task runner both flows pin (why: below);
- :func:`plain`: a task parameter Prefect does not walk looking for futures;
- :func:`apply_in_chunks`: one ``apply-changes-N-of-M`` task run per chunk, under the tenant's apply slot;
- :func:`conclude`: the report artifact, the run's record in the state store, the run's final state.

Only wiring: the decisions are :mod:`scimflow.apply`'s, the stages the tasks of ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from prefect.utilities.context import get_task_and_flow_run_ids

from flows.prefect_client import api_client
from flows.states import final_state
from flows.tenant_slot import TenantSlot
from scimflow.apply import Conclusion, PlanRow, RowResult, SyncResult, chunk_rows
from scimflow.config import Config
from tasks.apply import apply_changes, finish_sync_run, release_apply_session
from tasks.preview import ArtifactKeys, publish_report

__all__ = ["TASK_RUNNER", "apply_in_chunks", "conclude", "plain"]

_T = TypeVar("_T")

#: The flows' task runner, pinned: Prefect's in-process thread pool. The chunk tasks of one apply share one
#: :class:`~scimflow.apply.ApplySession` kept in this process (``tasks/apply.py``: one logged-in writer, one
#: pool of ``concurrency`` writer threads, and the chunks' turns, chunk n waiting for older chunks). Under
#: a process or distributed task runner a chunk would wait for chunks it never sees and each process would
#: log in and open its own writers, so the runner is named here instead of left to a default.
TASK_RUNNER = cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner())


def plain(value: _T) -> _T:
    """``value`` wrapped in Prefect's ``quote``: a task parameter Prefect does not walk looking for futures.

    Plan rows and results are plain data, thousands of models per run; walking them costs the apply CPU
    it needs for its requests. The task receives ``value`` itself (Prefect unwraps ``quote``), hence the cast.
    """
    return cast(_T, quote(value))


def _progress(key: str | None, description: str | None, percent: float, artifact: UUID | None) -> UUID:
    """Create (``artifact`` None) or update the apply's progress artifact, as ``prefect.artifacts``'
    progress helpers do but through :func:`~flows.prefect_client.api_client`: a locked SQLite server's
    503 costs milliseconds, not 2 s, while the chunks write."""
    with api_client() as client:
        if artifact is None:
            task_run_id, flow_run_id = get_task_and_flow_run_ids()
            created = client.create_artifact(
                ArtifactCreate(
                    type="progress", key=key, description=description, data=percent,
                    flow_run_id=flow_run_id, task_run_id=task_run_id,
                )
            )  # fmt: skip
            return created.id
        client.update_artifact(artifact, ArtifactUpdate(data=percent))
        return artifact


def apply_in_chunks(
    config: Config,
    plan_hash: str,
    rows: list[PlanRow],
    run_id: str,
    progress_key: str | None = None,
    slot: TenantSlot | None = None,
) -> list[RowResult]:
    """Apply ``rows`` as one task run per chunk, all submitted at once (each waits for its turn), under the
    tenant's apply slot (one apply per tenant at a time: ``flows/tenant_slot.py``; ``slot``: one the run
    asked for early, else asked for now; released either way); with ``progress_key``, a progress artifact of
    the chunks finished.

    The chunks at work share the run's ``write_concurrency`` writers, so the later ones' drift re-read
    overlaps the earlier ones' writes and the writers stay busy from one chunk to the next.
    """
    slot = slot or TenantSlot(config.tenant_key)
    chunks = chunk_rows(rows)
    if not chunks:
        slot.release()
        return []
    progress: UUID | None = None
    if progress_key is not None:
        progress = _progress(progress_key, f"Applying {len(rows)} changes", 0.0, None)
    results: list[RowResult] = []
    futures: list[PrefectFuture[list[RowResult]]] = []
    with slot.held():
        try:
            for i, chunk in enumerate(chunks, start=1):
                futures.append(
                    apply_changes.submit(config, plan_hash, plain(chunk), index=i, total=len(chunks), run_id=run_id)
                )
            for i, future in enumerate(futures, start=1):
                results += future.result()
                if progress is not None:
                    _progress(progress_key, None, 100.0 * i / len(chunks), progress)
        finally:
            for future in futures:
                future.wait()
            release_apply_session(plan_hash, run_id)
    return results


def conclude(
    config: Config,
    keys: ArtifactKeys,
    end: Conclusion,
    *,
    plan_hash: str,
    plan_dir: Path,
    summary: dict[str, Any],
    source_users: int | None,
) -> State[SyncResult]:
    """Publish the report artifact, record how the run ended (``source_users``: the next run's
    ``max_source_drop`` base, ``None`` for a run that read no source), and return the run's final state
    (its :class:`~scimflow.apply.SyncResult` as the data). ``summary`` is the plan's ``summary.json``."""
    result = SyncResult.model_validate(
        {
            "status": end.status,
            "plan_hash": plan_hash,
            "plan_dir": str(plan_dir),
            "counts": {k: int(v) for k, v in summary.items() if isinstance(v, int)},
            "guardrails": summary.get("guardrails", {}),
            "report": end.report,
            "approver": end.approver,
            "comment": end.comment,
            "flow_run_id": str(flow_run.id) if flow_run.id else None,
            "artifacts": keys.model_dump(),
        }
    )
    publish_report(
        end.report,
        keys,
        status=end.status,
        plan_hash=plan_hash,
        plan_dir=plan_dir,
        approver=end.approver,
        comment=end.comment,
        held_by=end.held_by,
    )
    record = {**result.counts, "status": end.status, "plan_hash": plan_hash}
    if end.report is not None:
        record.update(end.report.model_dump(exclude={"rows", "plan_hash"}))
    finish_sync_run(config, end.run_id, result.run_status, record, source_users)
    return final_state(result)
