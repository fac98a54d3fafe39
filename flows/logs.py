"""The core's log lines (``scimflow.*``: retries, 429s, drift, writes) in the flow run's logs in the UI.

Prefect's ``PREFECT_LOGGING_EXTRA_LOGGERS`` would attach its API handler to ``scimflow`` too, but that handler
finds the run from the calling thread's Prefect context, which the core's own threads (the apply's writer
pool, the Graph pages' readers) do not have: their lines would be dropped with a warning. Here the API
handler is attached for the run's duration with a filter that stamps each record with the run's id (and the
task run's, when there is one), so every ``scimflow`` line at INFO and above reaches the run, from any thread.

Secrets: the core never logs one (tokens, passwords, client secrets; URLs are logged through
``sanitize_url`` and the ``token=`` redaction of :mod:`scimflow.connectors.http`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar
from uuid import UUID

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run

__all__ = ["CORE_LOGGER", "core_logs_to_run", "with_core_logs"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The core's parent logger.
CORE_LOGGER = "scimflow"


class _StampRun(logging.Filter):
    """Give each record the flow run's id (and the current task run's), so the API handler needs no context.

    A record logged within another flow run's context (two runs in one process, as in the tests) is left to
    that run's handler.
    """

    def __init__(self, flow_run_id: UUID) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        task = TaskRunContext.get()
        flow = FlowRunContext.get()
        if task is not None:
            if task.task_run.flow_run_id != self.flow_run_id:
                return False
            record.task_run_id = task.task_run.id
        elif flow is not None and flow.flow_run is not None and flow.flow_run.id != self.flow_run_id:
            return False
        else:
            record.task_run_id = None
        record.flow_run_id = self.flow_run_id
        return True


@contextmanager
def core_logs_to_run(level: int = logging.INFO) -> Iterator[None]:
    """Within the block, send ``scimflow.*`` records at ``level`` and above to the current flow run's logs."""
    run_id = flow_run.id
    if run_id is None:  # not in a flow run
        yield
        return
    logger = logging.getLogger(CORE_LOGGER)
    handler = APILogHandler(level=level)
    handler.addFilter(_StampRun(UUID(str(run_id))))
    previous = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def with_core_logs(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a flow's function (under ``@flow``) so its run's logs include the core's lines.

    The wrapper carries ``fn``'s signature and annotations resolved (in ``fn``'s module): Prefect resolves
    the parameters' annotations in the wrapper's module, this one.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with core_logs_to_run():
            return fn(*args, **kwargs)

    wrapper.__annotations__ = typing.get_type_hints(fn)
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return wrapper
