"""The bench harness: emulator processes, scenario processes, the Prefect server, the results table.

Every scenario runs in a fresh child process (``python -m bench._scenario``), the emulators in another
(``python -m bench._emulate``), and the Prefect server in a third (``prefect server start``), so a
scenario's peak RSS is the pipeline's alone. :func:`run_bench` runs a list of :class:`Group` (an emulator
pair and the scenarios run against it, in order, sharing its state) and returns the results;
:func:`render_markdown` turns them into ``results.md``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._common import STAGES, Result

__all__ = [
    "COLUMNS",
    "EmulatorSpec",
    "Group",
    "Step",
    "machine_info",
    "render_markdown",
    "render_table",
    "run_bench",
    "temp_work",
]

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class EmulatorSpec:
    """An emulator pair: tenant size and kind, latency per request, SuperOffice rate limit."""

    users: int
    tenant: str  # "creates" | "matched"
    latency: float = 0.020
    rps: float | None = None
    target: str = "superoffice"  # "scim": Graph + an empty SCIM emulator (bench._scim serve), ``tenant`` unused


@dataclass(frozen=True)
class Step:
    """One scenario process: its kind (see ``bench._scenario``), name, title and parameters."""

    kind: str
    name: str
    title: str
    users: int
    params: dict[str, Any] = field(default_factory=dict)
    incremental: bool = False
    shown: bool = True  # False: a preparation step, not a row of the table
    timeout: float = 900.0


@dataclass(frozen=True)
class Group:
    """Steps run in order against one emulator pair (``None``: no emulators, e.g. planning alone)."""

    emulator: EmulatorSpec | None
    steps: tuple[Step, ...]


# --- processes --------------------------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1",
                "PREFECT_LOGGING_LEVEL": "WARNING"})
    env.update(extra or {})
    return env


@contextmanager
def emulator_process(spec: EmulatorSpec, folder: Path, timeout: float = 300.0) -> Iterator[dict[str, Any]]:
    """Start ``python -m bench._emulate`` and yield its announcement once both emulators accept connections."""
    if spec.target == "scim":
        cmd = [sys.executable, "-m", "bench._scim", "serve", "--folder", str(folder), "--users", str(spec.users),
               "--latency", str(spec.latency)]
    else:
        cmd = [sys.executable, "-m", "bench._emulate", "--folder", str(folder), "--users", str(spec.users),
               "--tenant", spec.tenant, "--latency", str(spec.latency)]
    if spec.rps:
        cmd += ["--rps", str(spec.rps)]
    log = (folder.parent / f"{folder.name}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    try:
        if not line or not line[0].strip():
            msg = f"the emulators did not start within {timeout:.0f} s (log: {log.name})"
            raise RuntimeError(msg)
        yield json.loads(line[0])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def run_step(step: Step, params: dict[str, Any], work: Path, env: dict[str, str]) -> Result:
    """Run one scenario in a fresh ``python -m bench._scenario`` process and read its result."""
    out = work / f"{step.name}.json"
    out.unlink(missing_ok=True)
    full = {"name": step.name, "title": step.title, "users": step.users, "incremental": step.incremental,
            **step.params, **params}
    if step.kind == "scim":  # the SCIM push has its own scenario module
        cmd = [sys.executable, "-m", "bench._scim", "run", "--out", str(out), "--params", json.dumps(full)]
    else:
        cmd = [sys.executable, "-m", "bench._scenario", step.kind, "--out", str(out), "--params", json.dumps(full)]
    log = work / f"{step.name}.log"
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        try:
            subprocess.run(cmd, cwd=ROOT, env=_env(env), stdout=fh, stderr=subprocess.STDOUT, timeout=step.timeout,
                           check=False)
        except subprocess.TimeoutExpired:
            return Result(name=step.name, title=step.title, users=step.users, ok=False,
                          error=f"timed out after {step.timeout:.0f} s")
    if not out.exists():
        tail = log.read_text(errors="replace")[-800:]
        return Result(name=step.name, title=step.title, users=step.users, ok=False,
                      error=f"no result after {time.perf_counter() - t0:.0f} s: {tail}")
    return Result.from_json(out.read_text(encoding="utf-8"))


class PrefectServer:
    """One ``prefect server start`` for the whole bench (its own PREFECT_HOME; telemetry off)."""

    def __init__(self, home: Path) -> None:
        from scimflow.commands.sync_cmd import LocalPrefectServer

        self.home = home
        self.server = LocalPrefectServer.start(home, ui=False, auth=False)
        self._ready: float | None = None

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def wait(self, timeout: float = 120.0) -> float:
        if self._ready is None:
            self._ready = self.server.wait_healthy(timeout)
        return self._ready

    def env(self) -> dict[str, str]:
        return {"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url}

    def stop(self) -> None:
        self.server.stop()


# --- running ----------------------------------------------------------------------------------------


def run_bench(
    groups: Sequence[Group],
    work: Path,
    *,
    budget_s: float | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> list[Result]:
    """Run every group's steps; a step past the time budget is skipped and reported as such."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: list[Result] = []
    needs_prefect = any(s.kind == "flow" for g in groups for s in g.steps)
    prefect: PrefectServer | None = None  # started after planning alone, so it does not share its CPU
    try:
        for gi, group in enumerate(groups):
            if needs_prefect and prefect is None and group.emulator is not None:
                prefect = PrefectServer(work / "prefect-home")
            pending = list(group.steps)
            if budget_s is not None and time.perf_counter() - started > budget_s:
                results += [_skipped(s, "skipped: the bench's time budget was spent") for s in pending if s.shown]
                continue
            if group.emulator is None:
                results += _run_steps(pending, {}, work, prefect, started, budget_s, progress)
                continue
            spec = group.emulator
            folder = work / f"emulators-{gi}-{spec.tenant}-{spec.users}"
            progress(f"emulators: {spec.users:,} users ({spec.tenant}), latency {spec.latency * 1000:g} ms"
                     + (f", SuperOffice {spec.rps:g} req/s" if spec.rps else ""))
            try:
                with emulator_process(spec, folder) as info:
                    params = {"emulators": info, "out": str(folder / "plans"), "latency": spec.latency,
                              "throttled": bool(spec.rps)}
                    calibration = round_trip_note(info, spec.latency) if spec.latency > 0 else None
                    group_results = _run_steps(pending, params, work, prefect, started, budget_s, progress)
                    for r in group_results:
                        if calibration and r.ok:
                            r.notes.append(calibration)
                    results += group_results
            except RuntimeError as exc:
                results += [_skipped(s, f"not run: {exc}") for s in pending if s.shown]
    finally:
        if prefect is not None:
            prefect.stop()
    return results


def round_trip_note(info: dict[str, Any], latency: float, n: int = 40) -> str:
    """The emulator's answer time as a client sees it: ``n`` sequential requests from this process to the
    login service's JWKS (it carries the same latency as every SuperOffice request), median and p90, with a
    bare stdlib client (the emulator alone) and with httpx (the client the connectors use, its own cost added)."""
    import http.client
    from urllib.parse import urlsplit

    import httpx

    from scimflow.connectors.http import ssl_context

    url = info.get("round_trip_url") or info["superoffice"].rstrip("/") + "/login/.well-known/jwks"
    parts = urlsplit(url)
    context = ssl_context(info["ca_bundle"])

    def timed(get: Callable[[], object]) -> tuple[float, float]:
        get()  # connect
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            get()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[n // 2] * 1000, times[int(n * 0.9)] * 1000

    bare = http.client.HTTPSConnection(parts.hostname or "127.0.0.1", parts.port, context=context, timeout=30)

    def bare_get() -> bytes:
        bare.request("GET", parts.path)
        return bare.getresponse().read()

    try:
        stdlib = timed(bare_get)
    finally:
        bare.close()
    with httpx.Client(verify=context, trust_env=False, timeout=30) as c:
        via_httpx = timed(lambda: c.get(url).raise_for_status())
    return (f"emulator round trip at {latency * 1000:g} ms latency, {n} sequential requests from the bench process:"
            f" median {stdlib[0]:.1f} ms (p90 {stdlib[1]:.1f}) with a bare stdlib client, {via_httpx[0]:.1f} ms"
            f" (p90 {via_httpx[1]:.1f}) with httpx")


def _run_steps(
    steps: Sequence[Step],
    params: dict[str, Any],
    work: Path,
    prefect: PrefectServer | None,
    started: float,
    budget_s: float | None,
    progress: Callable[[str], None],
) -> list[Result]:
    out: list[Result] = []
    for i, step in enumerate(steps):
        if budget_s is not None and time.perf_counter() - started > budget_s:
            out += [_skipped(s, "skipped: the bench's time budget was spent") for s in steps[i:] if s.shown]
            break
        env: dict[str, str] = {}
        extra = dict(params)
        if step.kind == "flow":
            assert prefect is not None
            try:
                prefect.wait(300)  # a loaded machine starts it slowly
            except RuntimeError as exc:
                progress(f"  {step.name}: not run ({exc})")
                out.append(_skipped(step, f"not run: {exc}"))
                continue
            env = prefect.env()
            extra["api_url"] = prefect.api_url
        if "out" in extra:
            extra["out"] = str(Path(extra["out"]) / step.name)
        if budget_s is not None:  # a step never runs past the budget: it is stopped and reported
            left = budget_s - (time.perf_counter() - started)
            step = replace(step, timeout=max(30.0, min(step.timeout, left)))
        t0 = time.perf_counter()
        result = run_step(step, extra, work, env)
        progress(f"  {step.name}: {'ok' if result.ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s"
                 + (f" ({result.error})" if result.error else ""))
        if step.shown or not result.ok:
            out.append(result)
    return out


def _skipped(step: Step, why: str) -> Result:
    return Result(name=step.name, title=step.title, users=step.users, ok=False, error=why)


# --- reporting --------------------------------------------------------------------------------------

def _stage_cell(stage: str) -> Callable[[Result], str]:
    return lambda r: _num(r.stages.get(stage))


#: The table's columns: header and how a result fills it.
COLUMNS: tuple[tuple[str, Callable[[Result], str]], ...] = (
    ("Scenario", lambda r: r.title),
    ("Users", lambda r: f"{r.users:,}"),
    *((f"{stage.capitalize()} s", _stage_cell(stage)) for stage in STAGES),
    ("Total s", lambda r: _num(r.total_s)),
    ("Graph req", lambda r: _int(r.graph_requests)),
    ("SO req (writes)", lambda r: "-" if r.so_requests is None else f"{r.so_requests:,} ({_int(r.so_writes)})"),
    ("Peak RSS MiB", lambda r: _int(None if r.peak_rss_mib is None else round(r.peak_rss_mib))),
    ("Task runs", lambda r: _int(r.task_runs)),
    ("Apply bound s", lambda r: _num(r.apply_bound_s)),
    ("Apply / bound", lambda r: "-" if r.apply_ratio is None else f"{r.apply_ratio:.2f}x"),
    ("Apply est. s (est / measured)", lambda r: "-" if r.estimate_ratio is None else
     f"{_num(r.apply_estimate_s)} ({r.estimate_ratio:.2f}{' MISS' if r.estimate_missed else ''})"),
    ("Entra, documented (not measured)", lambda r: r.documented or "-"),
)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.3f}" if v < 1 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def render_table(results: Sequence[Result]) -> str:
    """The results as one Markdown table (the same table ``python -m bench`` prints)."""
    head = [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        cells = [fn(r) for _, fn in COLUMNS] if r.ok or r.total_s is not None else [
            r.title, f"{r.users:,}", *(["-"] * (len(head) - 3)), f"FAILED: {r.error}"]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    """Machine, date and commit the figures were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import polars as pl

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": f"{commit}{' (plus uncommitted changes)' if dirty else ''}",
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem} RAM, {platform.system()} {platform.release()}",
        "python": f"{platform.python_version()}, polars {pl.__version__}",
        "load": load,
    }


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        return "?"
    try:
        return subprocess.run([git, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def render_markdown(
    results: Sequence[Result],
    machine: dict[str, str],
    *,
    targets: Sequence[tuple[str, str, str]] = (),
    preamble: str = "",
    elapsed_s: float | None = None,
) -> str:
    """``results.md``: machine, date and commit, the table, the targets and per-scenario notes."""
    out = ["# scimflow benchmarks", "", "Written by `make bench` (`python -m bench`); do not edit by hand.", ""]
    out += [f"- **{k}**: {v}" for k, v in machine.items()]
    if elapsed_s is not None:
        out.append(f"- **bench wall time**: {elapsed_s:,.0f} s")
    out.append("")
    if preamble:
        out += [preamble.strip(), ""]
    out += ["## Results", "", render_table(results), ""]
    if targets:
        out += ["## Targets", "", "| Target | Result | Verdict |", "|---|---|---|"]
        out += [f"| {t} | {v} | {ok} |" for t, v, ok in targets]
        out.append("")
    out += ["## Notes per scenario", ""]
    for r in results:
        notes = [n for n in r.notes if "Traceback" not in n] if r.ok else r.notes
        text = "; ".join(n.strip().replace("\n", " / ") for n in notes) or "-"
        if r.error:
            text = f"**{r.error}**. {text}"
        out.append(f"- **{r.title}**: {text}")
    out.append("")
    return "\n".join(out)


def temp_work() -> Path:
    """A fresh working folder for one bench run (emulator folders, logs, the Prefect home)."""
    return Path(tempfile.mkdtemp(prefix="scimflow-bench-"))
