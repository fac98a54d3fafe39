"""Plan files (ARCHITECTURE.md "Plan files"): plan.jsonl, summary.json, plan.parquet, all owner-only.

Beside them ``links.jsonl`` keeps the plan's matched pairs (``Plan.matched_pairs``: matched users not linked
yet, unchanged ones included) so that ``scimflow apply PLAN_DIR`` can store them when it applies the plan
later: a first line ``{"plan_hash": ...}`` binding it to the plan, then one ``{"entra_id": ...,
"associate_id": ...}`` per pair (written by Polars: a first run of a large tenant has a pair per user).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import polars as pl

from scimflow.files import private_folder, write_private
from scimflow.plan._grace import PENDING_FILE
from scimflow.plan._guardrails import GuardrailVerdict
from scimflow.plan._planner import COUNT_KEYS, Plan

__all__ = ["LINKS_FILE", "plan_lines", "write_plan_files"]

#: The matched pairs of a plan, written beside its files (see the module's docstring).
LINKS_FILE = "links.jsonl"

_PLAIN = r"^[\x20-\x5b\x5d-\x7e]*$"  # printable ASCII without backslash: Polars' JSON == json.dumps


def plan_lines(rows: pl.DataFrame) -> list[str]:
    """Each row as ``json.dumps(row, sort_keys=True, separators=(",", ":"))`` (built in Polars).

    Rows whose text needs escaping (non-ASCII, quotes, control characters) are re-serialised by
    ``json.dumps`` itself, so the bytes are exactly the contract's.
    """
    if rows.is_empty():
        return []
    head = pl.struct("action", "associate_id").struct.json_encode().str.strip_suffix("}")
    tail = pl.struct("entra_id", "key", "reason", "rules").struct.json_encode().str.strip_prefix("{")
    built = rows.select(
        pl.concat_str([head, pl.lit(',"changes":'), pl.col("changes"), pl.lit(","), tail]).alias("line"),
    ).with_columns(pl.col("line").str.contains(_PLAIN).alias("plain"))
    lines: list[str] = built.get_column("line").to_list()
    plain = built.get_column("plain").to_list()
    if all(plain):
        return lines
    fields = ["action", "associate_id", "changes", "entra_id", "key", "reason", "rules"]
    for i, row in enumerate(rows.select(fields).iter_rows()):  # only rows that need escaping
        if plain[i]:
            continue
        record = dict(zip(fields, row, strict=True))
        record["changes"] = json.loads(record["changes"])
        lines[i] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return lines


def write_plan_files(plan: Plan, verdict: GuardrailVerdict, out: Path) -> str:
    """Write plan.jsonl, summary.json, plan.parquet and links.jsonl (and pending.jsonl under a grace period)
    into ``out`` (0600 files); return the plan hash."""
    private_folder(out)  # refused when a symlink, not ours, or group/world-writable
    lines = plan_lines(plan.rows)
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    plan_hash = hashlib.sha256(body).hexdigest()
    write_private(out / "plan.jsonl", body)
    summary = {k: int(plan.counts.get(k, 0)) for k in COUNT_KEYS}
    summary.update({k: int(v) for k, v in plan.counts.items() if k not in summary})  # e.g. a SCIM plan's groups
    summary["plan_hash"] = plan_hash  # type: ignore[assignment]
    summary["guardrails"] = verdict.to_dict()  # type: ignore[assignment]
    write_private(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    buf = io.BytesIO()
    plan.rows.write_parquet(buf)
    write_private(out / "plan.parquet", buf.getvalue())
    links = io.BytesIO()
    links.write(json.dumps({"plan_hash": plan_hash}).encode() + b"\n")
    plan.matched_pairs.select("entra_id", "associate_id").drop_nulls().write_ndjson(links)
    write_private(out / LINKS_FILE, links.getvalue())
    if plan.grace is not None:  # a grace period is configured (or was): pending.jsonl (plan/_grace.py)
        write_private(out / PENDING_FILE, plan.grace.jsonl())
    return plan_hash
