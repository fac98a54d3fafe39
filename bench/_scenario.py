"""One bench scenario in a fresh process: ``python -m bench._scenario KIND --out RESULT.json --params JSON``.

Kinds: ``prepare`` (planning inputs), ``plan`` (``build_plan`` alone), ``plan-reference`` (the reference
planner on a subset), ``pipeline`` (one sync run through the plain stage functions, optionally after
mutating a share of the Entra users), ``flow`` (one run of the real Prefect flow). The result is written as
JSON to ``--out``; the process's peak RSS in it is this scenario's alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import traceback
from pathlib import Path
from typing import Any

from bench._common import Result, entra_documented

__all__ = ["main"]


def _emulators(p: dict[str, Any]) -> Any:
    from bench._e2e import Emulators

    e = p["emulators"]
    return Emulators(graph=e["graph"], superoffice=e["superoffice"], config=Path(e["config"]),
                     ca_bundle=Path(e["ca_bundle"]))


def _run(kind: str, p: dict[str, Any]) -> Result:
    name, title, users = p.get("name", kind), p.get("title", kind), int(p.get("users", 0))
    if kind == "prepare":
        from bench._planning import prepare

        info = prepare(Path(p["folder"]), users)
        return Result(name=name, title=title, users=users, extra=info)
    if kind == "plan":
        from bench._planning import plan_fast

        return plan_fast(Path(p["folder"]), copies=int(p.get("copies", 1)), name=name, title=title)
    if kind == "plan-reference":
        from bench._planning import plan_reference

        return plan_reference(Path(p["folder"]), subset=int(p["subset"]))
    if kind == "pipeline":
        from bench._e2e import mutate_users, run_pipeline, set_superoffice

        emu = _emulators(p)
        if p.get("so_settings"):
            set_superoffice(emu, p["so_settings"])
        mutated = mutate_users(emu, float(p["mutate"])) if p.get("mutate") else 0
        result = run_pipeline(emu, name=name, title=title, users=users, out=Path(p["out"]),
                              throttled=bool(p.get("throttled") or (p.get("so_settings") or {}).get("rate_limit_rps")),
                              latency=float(p.get("latency", 0.02)),
                              rate_limit_rps=(p.get("so_settings") or {}).get("rate_limit_rps"))
        if mutated:
            result.notes.insert(0, f"{mutated:,} Entra users changed through /_emulator/users before the run")
    elif kind == "flow":
        from bench._e2e import mutate_users
        from bench._prefect import run_flow

        emu = _emulators(p)
        mutated = mutate_users(emu, float(p["mutate"])) if p.get("mutate") else 0
        result = run_flow(emu, api_url=p["api_url"], name=name, title=title, users=users,
                          latency=float(p.get("latency", 0.02)))
        if mutated:
            result.notes.insert(0, f"{mutated:,} Entra users changed through /_emulator/users before the run")
    else:
        msg = f"unknown scenario kind {kind!r}"
        raise ValueError(msg)
    result.documented = entra_documented(users, incremental=bool(p.get("incremental")))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._scenario")
    parser.add_argument("kind")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default="{}", help="the scenario's parameters as a JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    params = json.loads(args.params)
    try:
        result = _run(args.kind, params)
    except Exception as exc:  # the process boundary: the harness reports the failure
        result = Result(name=params.get("name", args.kind), title=params.get("title", args.kind),
                        users=int(params.get("users", 0)), ok=False, error=f"{type(exc).__name__}: {exc}",
                        notes=[traceback.format_exc(limit=6)])
    args.out.write_text(result.to_json(), encoding="utf-8")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
