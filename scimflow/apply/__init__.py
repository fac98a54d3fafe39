"""The apply stage (being split into modules; see :mod:`scimflow.apply._writer` for the writer seam)."""

from __future__ import annotations

from scimflow.apply._engine import *  # noqa: F403
from scimflow.apply._engine import __all__ as _engine_all
from scimflow.apply._writer import RowKey, Writer

__all__ = [*_engine_all, "RowKey", "Writer"]
