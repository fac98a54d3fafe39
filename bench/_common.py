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
    "COST_TOLERANCE",
    "STAGES",
    "Result",
    "Timer",
    "check_cost",
    "entra_documented",
    "peak_rss_mib",
]

#: The plan's estimated apply duration must be within this share of the measured one (issue 20).
COST_TOLERANCE = 0.25

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
    #: The plan's cost estimate of the apply (``cost.json``) and the apply time it is compared with.
    apply_estimate_s: float | None = None
    apply_measured_s: float | None = None
    documented: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error: str | None = None

    @property
    def estimate_ratio(self) -> float | None:
        """Estimated over measured apply seconds (``None``: not compared)."""
        if self.apply_estimate_s is None or not self.apply_measured_s:
            return None
        return self.apply_estimate_s / self.apply_measured_s

    @property
    def estimate_missed(self) -> bool:
        """The estimate is further than :data:`COST_TOLERANCE` from the measured apply."""
        ratio = self.estimate_ratio
        return ratio is not None and abs(ratio - 1.0) > COST_TOLERANCE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")


def check_cost(result: Result, plan_dir: Path | str, measured_s: float | None, requests: int | None,
               what: str = "the apply stage") -> None:
    """Put the plan's cost estimate (``cost.json`` in ``plan_dir``) beside ``measured_s`` in ``result``, with a
    note: estimated vs measured seconds and their ratio (flagged when off by more than ±25 %), and the
    requests estimated vs ``requests`` counted by the emulator (429 answers left out)."""
    from scimflow.plan._cost import read_cost

    cost = read_cost(plan_dir)
    if cost is None:
        result.notes.append("cost estimate: no cost.json beside the plan")
        return
    result.extra["cost"] = cost.to_json()
    if cost.total == 0 or cost.estimated_seconds is None or not measured_s:
        result.notes.append(f"cost estimate: {cost.total:,} requests, {cost.estimated_seconds} s ({cost.basis});"
                            " nothing to compare")
        return
    result.apply_estimate_s, result.apply_measured_s = cost.estimated_seconds, measured_s
    ratio = cost.estimated_seconds / measured_s
    flag = " **MISSED (beyond ±25 %)**" if result.estimate_missed else " (within ±25 %)"
    counted = "" if requests is None else f", {requests:,} counted by the emulator"
    result.notes.append(f"cost estimate: {cost.estimated_seconds:.2f} s vs {measured_s:.2f} s measured ({what}),"
                        f" estimate / measured {ratio:.2f}{flag}; {cost.basis}; {cost.total:,} requests estimated"
                        f"{counted}")


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
