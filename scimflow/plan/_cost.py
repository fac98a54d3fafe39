"""The cost of a plan: the requests its apply will send, per endpoint, and how long that should take.

Three parts, kept apart so that none can drift from what it describes:

- **The requests** come from the writer that will send them (:meth:`scimflow.apply.Writer.requests_for`,
  implemented next to the code that sends each request): ``{"POST api/v1/User": 1000, ...}`` for the rows
  the apply will write (the classes the guardrails hold left out), cut into chunks as the engine cuts them.
- **The round trip** is measured during this run's extract: :class:`RoundTrips` times every request of the
  target's reading client (httpx event hooks: request sent → answer read whole; a server may send its
  headers before it has done the work, the emulators' SCIM service does) and gives the fastest of its small
  successful reads (an answer of at most :data:`SMALL_READ_BYTES`: a reference list, a short page; a page of
  a thousand users is mostly the server's work, which one user's write does not have), else of all of them:
  the network and the server without this process's own contention (the extract's reads share the process
  with the Graph read, parsing thousands of users beside them in a flow run: their median was seen at 70 to
  200 ms for a 20 ms service), which the client-work term below models. With it the 429 answers seen and
  their ``Retry-After`` (:class:`TargetTiming`, carried in the extract's result).
- **The duration** (:func:`estimate`): the apply keeps ``write_concurrency`` requests in flight, so its
  requests take ``requests / concurrency x round trip``; the writer threads share one Python interpreter, so
  each request's own client work (its body built, its answer parsed, its journal line) is done one at a time:
  ``requests x`` :data:`CLIENT_MS_PER_REQUEST`, stretched by the share of a CPU this process gets at the
  time of the extract (:func:`cpu_stretch`: a few milliseconds of busy work timed by the clock and by the
  thread's CPU time; 1 on an idle machine); plus the round trips that cannot overlap anything
  (:data:`FIXED_ROUNDS`: logging in and reading the reference lists, the first chunk's re-read, the last
  chunk's read-back) and, per chunk, :data:`CHUNK_ROUNDS` (its journal transactions, re-read and read-back
  overlap the other chunks' writes only in part). When the extract was throttled, the rate it was served at caps that pace
  (``requests / rate``); neither SuperOffice nor the SCIM targets document a rate limit
  (reference/superoffice.md §4, reference/scim-target.md), so none is assumed otherwise.

The figure is written as ``cost.json`` beside the plan files (``summary.json``'s keys are a contract, see
ARCHITECTURE.md; this file is not part of the plan hash) and shown by the preview and ``scimflow plan``.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from scimflow.apply import PlanRow, TargetView, Writer

__all__ = [
    "CHUNK_ROUNDS",
    "CLIENT_MS_PER_REQUEST",
    "COST_FILE",
    "FIXED_ROUNDS",
    "SMALL_READ_BYTES",
    "Cost",
    "RoundTrips",
    "TargetTiming",
    "cost_lines",
    "cost_text",
    "cpu_stretch",
    "estimate",
    "plan_cost",
    "read_cost",
    "write_cost",
]

#: The file beside the plan files that holds the estimate.
COST_FILE = "cost.json"
#: Round trips of an apply that overlap nothing: log in, the reference lists, the first chunk's re-read,
#: the last chunk's read-back.
FIXED_ROUNDS = 6
#: Round trips each chunk adds to the apply beyond its requests' share, measured in ``make bench`` on a quiet
#: machine (20 ms round trips, 10 chunks, commit 15280d6): the flow's chunk tasks added 0.2-0.3 s to runs of
#: 1,166 and 2,039 requests, the plain apply (no Prefect) next to nothing to one of 1,169; 2 per chunk covers
#: both. (It was 4 while a locked Prefect server's 503 could stall the flow 2 s: ``flows/prefect_client.py``.)
CHUNK_ROUNDS = 2
#: The client's own work per request, done one thread at a time (the GIL), in ms: the apply's time per request
#: beyond ``round trip / concurrency`` in ``make bench``'s write-bound runs on a quiet machine (AMD EPYC), which
#: ranged from 0.1 ms (10,000 creates in 59 s) to 0.5 ms (the same in 65 s) for the SuperOffice writer and was
#: 0.6 ms for the SCIM push (its server's own work included). Next to a real service's round trip (100 ms and
#: more) it is small; next to the emulators' 20 ms it is a tenth of the figure.
CLIENT_MS_PER_REQUEST = 0.4
#: Reads whose answer has at most this many bytes are the round trip's samples (when there are any).
SMALL_READ_BYTES = 16 * 1024
_T0 = "scimflow.sent_at"


@dataclass(frozen=True)
class TargetTiming:
    """How the target answered this run's extract (:meth:`RoundTrips.timing`)."""

    #: The fastest small read, sent to read whole, in ms (``None``: no read was timed).
    rtt_ms: float | None = None
    #: Successful reads timed.
    reads: int = 0
    #: Of which small (:data:`SMALL_READ_BYTES`): the samples of ``rtt_ms`` when there are any.
    small_reads: int = 0
    #: Median of every read, in ms (pages of many users included).
    all_reads_ms: float | None = None
    #: Answers 429 (throttled).
    throttled: int = 0
    #: The largest ``Retry-After`` of those answers, in seconds.
    retry_after_s: float | None = None
    #: Successful requests per second from the first 429 on (the pace the target allowed), when throttled.
    rate_rps: float | None = None
    #: Wall time over CPU time of a little busy work at the end of the extract (:func:`cpu_stretch`).
    cpu_stretch: float = 1.0


class RoundTrips:
    """Times the requests of an ``httpx.Client`` through its event hooks (thread-safe).

    Example::

        trips = RoundTrips()
        trips.attach(client)
        ...                                  # the extract's reads
        timing = trips.timing()              # TargetTiming(rtt_ms=21.4, reads=38, ...)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: list[tuple[float, bool]] = []  # (seconds, small answer)
        self._ends: list[float] = []
        self._first_429: float | None = None
        self._throttled = 0
        self._retry_after: float | None = None

    def attach(self, client: httpx.Client) -> None:
        """Add this recorder's hooks to ``client`` (keeping the hooks it has)."""
        hooks = client.event_hooks
        hooks.setdefault("request", []).append(self._sent)
        hooks.setdefault("response", []).append(self._answered)
        client.event_hooks = hooks

    def _sent(self, request: httpx.Request) -> None:
        request.extensions[_T0] = time.perf_counter()

    def _answered(self, response: httpx.Response) -> None:
        now = time.perf_counter()
        sent = response.request.extensions.get(_T0)
        status = response.status_code
        with self._lock:
            if status == 429:
                self._throttled += 1
                if self._first_429 is None:
                    self._first_429 = now
                retry = _seconds(response.headers.get("Retry-After"))
                if retry is not None:
                    self._retry_after = max(retry, self._retry_after or 0.0)
                return
            if status < 400:
                self._ends.append(now)
        if status < 400 and response.request.method == "GET" and isinstance(sent, float):
            # The hook runs once the headers are in; the answer is whole only once its body is. Reading it here
            # is what the client does next anyway (no request of the connectors streams its answer).
            size = len(response.read())
            done = time.perf_counter()
            with self._lock:
                self._reads.append((done - sent, size <= SMALL_READ_BYTES))

    def timing(self) -> TargetTiming:
        """What was seen so far."""
        with self._lock:
            every = [t for t, _ in self._reads]
            small = [t for t, is_small in self._reads if is_small]
            rtt = min(small or every) * 1000 if every else None
            rate = None
            if self._first_429 is not None:
                after = [t for t in self._ends if t > self._first_429]
                span = (max(after) - self._first_429) if after else 0.0
                rate = len(after) / span if span > 0 and len(after) >= 2 else None
            return TargetTiming(
                rtt_ms=None if rtt is None else round(rtt, 2),
                reads=len(self._reads),
                small_reads=len(small),
                all_reads_ms=round(statistics.median(every) * 1000, 2) if every else None,
                throttled=self._throttled,
                retry_after_s=self._retry_after,
                rate_rps=None if rate is None else round(rate, 2),
                cpu_stretch=cpu_stretch(),
            )


def cpu_stretch(samples: int = 9, work_ms: float = 3.0) -> float:
    """How much longer than its CPU time a piece of this process's Python work takes now: the median, over
    ``samples`` runs of about ``work_ms`` of busy work, of wall time over the thread's CPU time (at least 1).

    On an idle machine it is 1; when other processes (or this one's other threads) want the cores, the
    writer threads' own work per request waits that much longer for its turn.
    """
    ratios = []
    for _ in range(samples):
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        while time.thread_time() - cpu0 < work_ms / 1000.0:
            pass
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        ratios.append(wall / cpu if cpu > 0 else 1.0)
    return round(max(1.0, statistics.median(ratios)), 2)


def _seconds(value: str | None) -> float | None:
    from scimflow.connectors.http import parse_retry_after

    return parse_retry_after(value)


@dataclass(frozen=True)
class Cost:
    """The requests an apply will send and how long it should take (``cost.json``)."""

    #: Requests per endpoint (``"PATCH api/v1/User/{id}": 120``), most first.
    requests: dict[str, int]
    #: Requests in flight at once (the target's ``write_concurrency``).
    concurrency: int
    #: The extract's median round trip to the target, in ms (``None``: not measured).
    rtt_ms: float | None
    #: The pace the target allowed when the extract was throttled (``None``: not throttled).
    rate_limit_rps: float | None = None
    #: Expected seconds for the apply (``None`` without a round trip).
    estimated_seconds: float | None = None
    #: Round trips counted besides the requests' share (:data:`FIXED_ROUNDS`).
    fixed_rounds: int = FIXED_ROUNDS
    #: The client's work per request (:data:`CLIENT_MS_PER_REQUEST`) and how much the machine's load stretched it.
    client_ms: float = CLIENT_MS_PER_REQUEST
    cpu_stretch: float = 1.0
    #: Chunks the engine cuts the rows into (:func:`scimflow.apply.chunk_rows`).
    chunks: int = 0
    #: Rows the figure covers (change rows not held by the guardrails).
    rows: int = 0
    #: How the figure was reached, in words.
    basis: str = ""

    @property
    def total(self) -> int:
        """All requests."""
        return sum(self.requests.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cost:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def estimate(
    requests: Mapping[str, int],
    *,
    rtt_ms: float | None,
    concurrency: int,
    rate_limit_rps: float | None = None,
    rows: int = 0,
    fixed_rounds: int = FIXED_ROUNDS,
    client_ms: float = CLIENT_MS_PER_REQUEST,
    stretch: float = 1.0,
    chunks: int = 0,
) -> Cost:
    """The expected duration of sending ``requests`` with ``concurrency`` in flight, ``rtt_ms`` each.

    ``requests x (rtt / concurrency + client_ms x stretch) + (fixed_rounds + chunks x CHUNK_ROUNDS) x rtt``
    (``chunks``: how many the engine cuts the rows into); with a rate limit, at least
    ``requests / rate``. No requests: 0 s. No round trip measured: no figure (``estimated_seconds`` ``None``).
    """
    ordered = dict(sorted(((k, int(v)) for k, v in requests.items() if v), key=lambda kv: (-kv[1], kv[0])))
    total = sum(ordered.values())
    conc = max(1, int(concurrency))
    common: dict[str, Any] = {
        "requests": ordered,
        "concurrency": conc,
        "rtt_ms": rtt_ms,
        "rate_limit_rps": rate_limit_rps,
        "rows": rows,
        "client_ms": client_ms,
        "cpu_stretch": max(1.0, stretch),
        "chunks": chunks,
    }
    if total == 0:
        return Cost(**common, estimated_seconds=0.0, fixed_rounds=0, basis="no requests")
    if rtt_ms is None:
        return Cost(**common, estimated_seconds=None, fixed_rounds=fixed_rounds, basis="no round trip measured")
    rtt = rtt_ms / 1000.0
    client = client_ms * max(1.0, stretch)
    rounds = fixed_rounds + chunks * CHUNK_ROUNDS
    paced = (total / conc + rounds) * rtt + total * client / 1000.0
    stretched = f" x {stretch:g} (CPU share)" if stretch > 1.0 else ""
    basis = (
        f"{total:,} requests x ({rtt_ms:.1f} ms round trip / {conc} in flight + {client_ms:g} ms client work"
        f"{stretched}) + {rounds} round trips ({fixed_rounds} + {CHUNK_ROUNDS} per chunk x {chunks})"
    )
    seconds = paced
    if rate_limit_rps:
        limited = total / rate_limit_rps
        if limited > paced:
            seconds = limited
            basis = f"{total:,} requests / {rate_limit_rps:g} per s (the pace the target allowed during the extract)"
    return Cost(**common, estimated_seconds=round(seconds, 3), fixed_rounds=fixed_rounds, basis=basis)


def plan_cost(
    writer: Writer,
    rows: Sequence[PlanRow],
    timing: TargetTiming | None,
    seen: TargetView,
    *,
    rate_limit_rps: float | None = None,
) -> Cost:
    """The cost of applying ``rows`` (the change rows the apply will write) through ``writer``.

    ``rate_limit_rps``: the target's configured rate limit; else the pace it allowed the extract after a 429.
    """
    from scimflow.apply import chunk_rows

    counted: Counter[str] = writer.requests_for(rows, seen)
    timing = timing or TargetTiming()
    return estimate(
        counted,
        rtt_ms=timing.rtt_ms,
        concurrency=writer.concurrency,
        rate_limit_rps=rate_limit_rps or (timing.rate_rps if timing.throttled else None),
        rows=len(rows),
        stretch=timing.cpu_stretch,
        chunks=len(chunk_rows(rows)),
    )


def write_cost(out: Path | str, cost: Cost) -> Path:
    """Write ``cost.json`` (owner-only) into the plan folder ``out``."""
    from scimflow.files import write_private

    return write_private(Path(out) / COST_FILE, json.dumps(cost.to_json(), indent=1, sort_keys=True) + "\n")


def read_cost(plan_dir: Path | str) -> Cost | None:
    """The plan's ``cost.json``, or ``None`` when there is none (an older plan, an offline plan)."""
    path = Path(plan_dir) / COST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        msg = f"{path}: not a cost file ({exc})"
        raise ValueError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object"
        raise ValueError(msg)
    return Cost.from_json(data)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(math.ceil(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _most_first(cost: Cost) -> list[tuple[str, int]]:
    return sorted(cost.requests.items(), key=lambda kv: (-kv[1], kv[0]))


def _headline(cost: Cost) -> str:
    if cost.total == 0:
        return "no requests (nothing to write)"
    when = "unknown (no round trip measured)" if cost.estimated_seconds is None else _duration(cost.estimated_seconds)
    rtt = "" if cost.rtt_ms is None else f", round trip {cost.rtt_ms:.1f} ms"
    rate = "" if not cost.rate_limit_rps else f", throttled to {cost.rate_limit_rps:g} req/s"
    return f"{cost.total:,} requests, about {when} ({cost.concurrency} in flight{rtt}{rate})"


def cost_text(cost: Cost) -> str:
    """``scimflow plan``'s lines: the requests and expected duration, then one line per endpoint."""
    width = len(f"{max(cost.requests.values(), default=0):,}")
    lines = [f"apply cost: {_headline(cost)}"]
    lines += [f"  {n:>{width},}  {endpoint}" for endpoint, n in _most_first(cost)]
    return "\n".join(lines)


def cost_lines(plan_dir: Path | str) -> list[str]:
    """The preview's section on the apply's cost (markdown; ``[]`` when the plan has no ``cost.json``)."""
    cost = read_cost(plan_dir)
    if cost is None:
        return []
    lines = ["", f"**Cost of the apply:** {_headline(cost)}"]
    if cost.total:
        lines += ["", "| requests | endpoint |", "|---:|---|"]
        lines += [f"| {n:,} | `{endpoint}` |" for endpoint, n in _most_first(cost)]
        if cost.basis:
            lines += ["", f"Estimate: {cost.basis}."]
    return lines
