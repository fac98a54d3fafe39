"""What every bench scenario reports, and the small helpers the scenario processes share.

A scenario runs in its own child process (``python -m bench._scenario NAME --out FILE``) and writes one
:class:`Result` as JSON; its ``peak_rss_mib`` is that process's ``ru_maxrss`` and nothing else's.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "STAGES",
    "Result",
    "Timer",
    "entra_documented",
    "peak_rss_mib",
]

#: The pipeline's stages, in order (the table's per-stage columns).
STAGES: tuple[str, ...] = ("extract", "validate", "plan", "preview", "apply")


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Result:
    """One scenario's figures. ``None`` means "not measured in this scenario" (shown as a dash)."""

    name: str
    title: str
    users: int
    stages: dict[str, float | None] = field(default_factory=dict)
    total_s: float | None = None
    graph_requests: int | None = None
    so_requests: int | None = None
    so_writes: int | None = None
    apply_requests: int | None = None
    apply_writes: int | None = None
    changes: int | None = None
    peak_rss_mib: float | None = None
    task_runs: int | None = None
    apply_bound_s: float | None = None
    apply_ratio: float | None = None
    documented: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")


class Timer:
    """Wall-clock times of named stages: ``with timer("plan"): ...``."""

    def __init__(self) -> None:
        self.stages: dict[str, float | None] = dict.fromkeys(STAGES)
        self._t0 = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = (self.stages.get(stage) or 0.0) + time.perf_counter() - t0

    @property
    def total(self) -> float:
        return time.perf_counter() - self._t0


def entra_documented(objects: int, *, incremental: bool = False) -> str:
    """Entra's documented provisioning time for ``objects`` objects (reference/graph.md section 6).

    Initial cycles: 0.01-0.08 min per object (the current formula, "assigned users and groups only").
    Incremental cycles: run about every 40 minutes and usually finish "within 10 minutes".
    """
    if incremental:
        return "incremental cycle every ~40 min, usually done within 10 min (documented)"
    low, high = 0.01 * objects, 0.08 * objects
    return f"{_minutes(low)}-{_minutes(high)} (documented)"


def _minutes(m: float) -> str:
    if m >= 120:
        return f"{m / 60:,.0f} h" if m >= 600 else f"{m / 60:,.1f} h"
    return f"{m:,.0f} min"
