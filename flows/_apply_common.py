"""The apply wiring both flows share: ``sync-users`` (``flows/sync.py``) and ``apply-saved-plan``
(``flows/apply_plan.py``) apply approved rows in chunk task runs and conclude the same way.

- :data:`TASK_RUNNER`: the task runner both flows pin (why: below);
- :func:`plain`: a task parameter Prefect does not walk looking for futures;
- :func:`apply_in_chunks`: one ``apply-changes-N-of-M`` task run per chunk, under the tenant's apply slot;
- :func:`conclude`: the report artifact, the run's record in the state store, the run's final state.

Only wiring: the decisions are :mod:`scimflow.apply`'s, the stages the tasks of ``tasks/``.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect import get_run_logger
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


class _Progress:
    """The apply's progress artifact (none without a key), created and updated by one background thread in
    order, through :func:`~flows.prefect_client.api_client`: neither the chunks nor the flow wait for the
    server, which is busy recording the chunks' task runs. :meth:`close` waits for the last update."""

    def __init__(self, key: str | None, description: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scimflow-progress")
        self._id: Future[UUID] | None = None
        if key is not None:
            ids = get_task_and_flow_run_ids()  # read here: the background thread has no run context
            self._id = self._pool.submit(contextvars.copy_context().run, self._create, key, description, ids)

    @staticmethod
    def _create(key: str, description: str, ids: tuple[UUID | None, UUID | None]) -> UUID:
        task_run_id, flow_run_id = ids
        with api_client() as client:
            created = client.create_artifact(
                ArtifactCreate(
                    type="progress", key=key, description=description, data=0.0,
                    flow_run_id=flow_run_id, task_run_id=task_run_id,
                )
            )  # fmt: skip
        return created.id

    def _update(self, percent: float) -> None:
        assert self._id is not None
        with api_client() as client:
            client.update_artifact(self._id.result(), ArtifactUpdate(data=percent))

    def update(self, percent: float) -> None:
        """Queue an update to ``percent`` (0-100)."""
        if self._id is not None:
            self._pool.submit(contextvars.copy_context().run, self._update, percent)

    def close(self) -> None:
        """Wait for the updates queued (a failed one is logged, never raised: the artifact is for show)."""
        self._pool.shutdown(wait=True)
        if self._id is not None and self._id.exception() is not None:
            get_run_logger().warning("could not create the progress artifact: %s", self._id.exception())


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
    own_slot = slot is None
    slot = slot or TenantSlot(config.tenant_key)
    chunks = chunk_rows(rows)
    if not chunks:
        slot.release(wait=own_slot)
        return []
    progress = _Progress(progress_key, f"Applying {len(rows)} changes")
    results: list[RowResult] = []
    futures: list[PrefectFuture[list[RowResult]]] = []
    # A slot the caller gave is given back in the background, after the last progress update: the caller
    # waits for both when it ends (TenantSlot.release); a slot of our own, before returning.
    with slot.held(release_in_background=not own_slot, before_release=progress.close):
        try:
            for i, chunk in enumerate(chunks, start=1):
                futures.append(
                    apply_changes.submit(config, plan_hash, plain(chunk), index=i, total=len(chunks), run_id=run_id)
                )
            for i, future in enumerate(futures, start=1):
                results += future.result()
                progress.update(100.0 * i / len(chunks))
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
