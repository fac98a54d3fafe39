"""Grace-period deprovisioning: ``deprovision: {action: retire | remove_plan, after: 7d}``.

The planner plans deprovisioning as it always does (a ``retire`` row per linked or matched active user that
is disabled, out of scope or gone); :func:`with_grace` then holds those rows back until they fall due:

- A retire row whose partner has no stored pending entry becomes **pending**: first seen now, due at
  ``now + after`` (a period in whole days from the start of that UTC day, so that runs at about the same time
  each night retire on the day the period ends, whatever their seconds). It is not a plan row (``plan.jsonl`` lists only what the apply will do); it is listed in
  ``pending.jsonl`` and counted as ``pending_retire`` (and as ``unchanged``: nothing is written for it).
- A retire row whose entry is due (``first seen + after <= now``) stays an ordinary ``retire`` row, its reason
  naming the grace period and the dates, and goes through the guardrails like any other.
- A stored entry whose partner is no longer to be retired (back in scope, re-enabled, already retired) is
  **cancelled**: dropped when the plan is saved, nothing written.

Entries are keyed by the partner's id (a SuperOffice AssociateId or a SCIM ``id``, as a string) and kept in
the state store (:mod:`scimflow.state._pending`): :func:`save_grace` records the plan's entries (new ones,
cancellations) when the plan is saved, so a crash between planning and applying loses none; the apply
stage drops an entry once its retirement is applied (:func:`scimflow.apply.finish_apply`).

All of it is a few joins over the retire rows (never a loop per user), and nothing at all runs when no grace
is configured and nothing is pending.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from scimflow.errors import ScimflowError

if TYPE_CHECKING:
    from scimflow.plan._guardrails import GuardrailVerdict
    from scimflow.plan._planner import Plan
    from scimflow.rules import RuleSet
    from scimflow.state import StateStore

__all__ = [
    "PENDING_COUNT",
    "PENDING_FILE",
    "PENDING_SCHEMA",
    "GraceOutcome",
    "PendingFileError",
    "empty_pending",
    "pending_lines",
    "pending_section",
    "read_pending",
    "save_grace",
    "with_grace",
]

#: The plan folder's list of users pending retirement (one JSON object per line, sorted by key).
PENDING_FILE = "pending.jsonl"
#: summary.json's count of pending users (present only when a grace period is configured or was).
PENDING_COUNT = "pending_retire"
_UTC = pl.Datetime("us", "UTC")
#: A pending entry, as the state store keeps it (``partner_id``: the partner's id as a string).
PENDING_SCHEMA: pl.Schema = pl.Schema(
    {  # type: ignore[arg-type]
        "partner_id": pl.String,
        "key": pl.String,
        "entra_id": pl.String,
        "first_seen": _UTC,
        "due": _UTC,
        "reason": pl.String,
    }
)
_STAMP = "%Y-%m-%d %H:%M UTC"


def empty_pending() -> pl.DataFrame:
    """No pending entries (:data:`PENDING_SCHEMA`)."""
    return pl.DataFrame(schema=PENDING_SCHEMA)


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        msg = "now: give an aware datetime (UTC), not a naive one"
        raise ValueError(msg)
    return now.astimezone(dt.UTC)


def _after_text(after: dt.timedelta) -> str:
    hours = int(after.total_seconds()) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


@dataclass(frozen=True)
class GraceOutcome:
    """What grace did to one plan.

    ``waiting``: retirements not due yet (not plan rows), :data:`PENDING_SCHEMA` plus ``associate_id`` as the
    plan rows have it; ``due``: entries due now (their ``retire`` rows are in the plan); ``cancelled``: stored
    entries no longer to be retired. ``after`` is ``None`` when no grace is configured (every stored entry is
    then dropped, and retirements are immediate).
    """

    after: dt.timedelta | None
    now: dt.datetime
    waiting: pl.DataFrame
    due: pl.DataFrame
    cancelled: pl.DataFrame

    def entries(self) -> pl.DataFrame:
        """What the state store keeps after this plan (:data:`PENDING_SCHEMA`): the waiting and the due."""
        if self.after is None:
            return empty_pending()
        return pl.concat([self.waiting.select(PENDING_SCHEMA.names()), self.due.select(PENDING_SCHEMA.names())])

    def jsonl(self) -> bytes:
        """``pending.jsonl``: per waiting user ``associate_id``, ``due``, ``entra_id``, ``first_seen``, ``key``,
        ``reason`` (times as ISO 8601 UTC), sorted by key."""
        if self.waiting.is_empty():
            return b""
        buf = io.BytesIO()
        iso = "%Y-%m-%dT%H:%M:%SZ"
        self.waiting.sort("key", "entra_id", nulls_last=True).select(
            "associate_id",
            pl.col("due").dt.strftime(iso),
            "entra_id",
            pl.col("first_seen").dt.strftime(iso),
            "key",
            "reason",
        ).write_ndjson(buf)
        return buf.getvalue()


def with_grace(plan: Plan, rules: RuleSet, pending: pl.DataFrame | None, now: dt.datetime | None) -> Plan:
    """``plan`` with the retirements that are not due yet held back (see the module's docstring).

    Args:
        plan: the planner's plan (``associate_id`` of either target's type).
        rules: the rule set (``rules.grace``: the grace period, or ``None``).
        pending: the stored entries (:data:`PENDING_SCHEMA`), ``None`` when there is no store.
        now: the time of this run (aware); the real clock when ``None``.

    Returns ``plan`` itself when no grace is configured and nothing is pending (no cost at all).
    """
    after = rules.grace
    stored = pending if pending is not None else empty_pending()
    if after is None and stored.is_empty():
        return plan
    now = _utc(now)
    stored = stored.select(PENDING_SCHEMA.names()).cast(PENDING_SCHEMA)
    pid = pl.col("associate_id").cast(pl.String)
    is_retire = (pl.col("action") == "retire") & pl.col("associate_id").is_not_null()
    candidates = plan.rows.filter(is_retire).select(
        pid.alias("partner_id"), "key", "entra_id", "reason", "associate_id"
    )
    cancelled = stored.join(candidates.select("partner_id"), on="partner_id", how="anti")
    if after is None:
        waiting = pl.DataFrame(schema={**PENDING_SCHEMA, "associate_id": plan.rows.schema["associate_id"]})
        outcome = GraceOutcome(None, now, waiting, empty_pending(), cancelled)
        return dataclasses.replace(plan, grace=outcome, counts={**plan.counts, PENDING_COUNT: 0})
    once = candidates.unique("partner_id", keep="first", maintain_order=True)  # one entry per partner, always
    timed = once.join(stored.select("partner_id", "first_seen"), on="partner_id", how="left").with_columns(
        pl.col("first_seen").fill_null(pl.lit(now, dtype=_UTC))
    )
    # a period in days falls due at the start of its UTC day, so a nightly run a few seconds earlier than the
    # first one still retires on the day (7d is never 8 nights); a period in hours falls due to the hour
    start = pl.col("first_seen").dt.truncate("1d") if after % dt.timedelta(days=1) == dt.timedelta(0) else None
    timed = timed.with_columns(((start if start is not None else pl.col("first_seen")) + pl.lit(after)).alias("due"))
    waiting = timed.filter(pl.col("due") > pl.lit(now, dtype=_UTC))
    due = timed.filter(pl.col("due") <= pl.lit(now, dtype=_UTC))
    # only the retire rows are touched: find them once by position (the plan's order is kept)
    at = plan.rows.select(pl.arg_where(is_retire)).to_series()
    rows = plan.rows
    if due.height:
        note = pl.concat_str(
            [
                pl.col("reason").fill_null("deprovisioned"),
                pl.lit(f"; its grace period ({_after_text(after)}) ended "),
                pl.col("due").dt.strftime(_STAMP),
                pl.lit(" (pending since "),
                pl.col("first_seen").dt.strftime(_STAMP),
                pl.lit(")"),
            ]
        )
        reasons = candidates.select("partner_id").join(
            due.select("partner_id", note.alias("_note")), on="partner_id", how="left", maintain_order="left"
        )
        due_at = reasons.select(pl.arg_where(pl.col("_note").is_not_null())).to_series()
        rows = rows.with_columns(
            rows.get_column("reason").clone().scatter(at.gather(due_at), reasons.get_column("_note").gather(due_at))
        )
    if waiting.height:
        waits = candidates.select(pl.col("partner_id").is_in(waiting.get_column("partner_id").implode())).to_series()
        rows = rows.filter(~pl.int_range(pl.len()).is_in(at.filter(waits).implode()))
    counts = dict(plan.counts)
    counts["retire"] = counts.get("retire", 0) - waiting.height
    counts["unchanged"] = counts.get("unchanged", 0) + waiting.height
    counts[PENDING_COUNT] = waiting.height
    outcome = GraceOutcome(after, now, waiting.select(*PENDING_SCHEMA.names(), "associate_id"), due, cancelled)
    return dataclasses.replace(plan, rows=rows, counts=counts, grace=outcome)


def save_grace(store: StateStore, plan: Plan, verdict: GuardrailVerdict) -> int | None:
    """Record the plan's pending entries (new, kept, due) and drop the cancelled ones, in one transaction;
    the number kept, or ``None`` when nothing was recorded.

    Called when the plan is saved (before any apply), so a crash between planning and applying loses no
    entry. A plan whose source is judged unhealthy records nothing: its "gone" users may only be missing
    from a broken extract.
    """
    grace = plan.grace
    if grace is None or verdict.verdict == "source_unhealthy":
        return None
    return store.save_pending(grace.entries())


class PendingFileError(ScimflowError, ValueError):
    """A plan folder's ``pending.jsonl`` cannot be read."""


def read_pending(out: Path) -> list[dict[str, Any]]:
    """The entries of ``out/pending.jsonl`` (none when the file is absent: no grace configured)."""
    path = Path(out) / PENDING_FILE
    if not path.exists():
        return []
    items: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{path}:{n}: not JSON ({exc.msg})"
            raise PendingFileError(msg) from None
        if not isinstance(item, dict) or "key" not in item or "due" not in item:
            msg = f"{path}:{n}: expected an object with key and due"
            raise PendingFileError(msg)
        items.append(item)
    return items


def pending_section(summary: Mapping[str, Any], plan_dir: Path | str, top: int = 15) -> list[str]:
    """The preview's section on users pending retirement (``plan_dir/pending.jsonl``): who, when each falls
    due, why, soonest first. Empty when no grace is configured (no ``pending_retire`` count, no file)."""
    return pending_lines(summary, read_pending(Path(plan_dir)), top)


def pending_lines(summary: Mapping[str, Any], pending: Sequence[Mapping[str, Any]], top: int = 15) -> list[str]:
    """:func:`pending_section` from the entries already read."""
    from scimflow.preview import md_code, md_text  # the preview renders with its escaping

    if PENDING_COUNT not in summary and not pending:
        return []
    total = len(pending) or int(summary.get(PENDING_COUNT, 0))  # the file is the whole tenant's, even narrowed
    lines = [
        "",
        f"**Pending retirement** ({total}): retired on the first run after their date, through the guardrails; "
        "back in scope before it cancels the retirement with no write.",
    ]
    if not pending:
        return [*lines, "", "Nobody is pending."]
    lines += ["", "| user | due | pending since | reason |", "|---|---|---|---|"]
    soonest = sorted(pending, key=lambda p: (str(p.get("due")), str(p.get("key"))))
    for p in soonest[:top]:
        cells = (p.get("key"), p.get("due"), p.get("first_seen") or "", p.get("reason") or "")
        lines.append("| " + " | ".join(md_text(c) for c in cells) + " |")
    if len(soonest) > top:
        lines += ["", f"Every pending user ({len(soonest)}) is in the plan folder's {md_code(PENDING_FILE)}."]
    return lines
