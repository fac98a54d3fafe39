"""The rule-history part of the state store: which rules each plan was made with, and their text.

Every plan records its rules' content hash (``plan_rules``: one row per planning, its plan hash, rules hash
and time) and the rules' text once per hash (``rule_texts``). A run records its plan hash, so the rules
of the last applied run are those recorded for its plan hash at or before the run started (two plans may
share a hash, e.g. two empty plans made with different rules: the newest one planned before the run wins).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from scimflow.state import _tables as t
from scimflow.state._base import StoreBase, aware, utc_now
from scimflow.state._runs import SUCCESSFUL_RUN_STATUSES

__all__ = ["AppliedRules", "RuleHistoryPart"]


@dataclass(frozen=True)
class AppliedRules:
    """The rules of one applied run: the run, its rules' hash and text, and when it finished."""

    run_id: str
    rules_hash: str
    text: str
    finished_at: dt.datetime | None


class RuleHistoryPart(StoreBase):
    """Rule history: record a plan's rules; the rules of the last applied run."""

    def record_plan_rules(self, plan_hash: str, rules_hash: str, text: str) -> None:
        """Record that ``plan_hash`` was planned now (one row per planning) with the rules ``text`` (whose hash is ``rules_hash``)."""
        now = utc_now()
        with self._tx() as conn:
            texts = self._insert(t.rule_texts).on_conflict_do_nothing(index_elements=["rules_hash"])
            conn.execute(texts, {"rules_hash": rules_hash, "text": text, "first_seen": now})
            conn.execute(sa.insert(t.plan_rules).values(plan_hash=plan_hash, rules_hash=rules_hash, planned_at=now))

    def last_applied_rules(self) -> AppliedRules | None:
        """The rules of the newest successful run (completed or partial) whose plan's rules are recorded
        (planned at or before the run started), or ``None``. A run whose plan was not made by the planner
        (an undo's inverse plan) or came before the rule history is passed over."""
        r, p, x = t.runs, t.plan_rules, t.rule_texts
        with self._tx() as conn:
            row = conn.execute(
                sa.select(r.c.id, r.c.finished_at, p.c.rules_hash, x.c.text)
                .join(p, (p.c.plan_hash == r.c.plan_hash) & (p.c.planned_at <= r.c.started_at))
                .join(x, x.c.rules_hash == p.c.rules_hash)
                .where(r.c.status.in_(SUCCESSFUL_RUN_STATUSES))
                .order_by(r.c.finished_at.desc(), r.c.started_at.desc(), p.c.planned_at.desc(), p.c.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return None
        return AppliedRules(run_id=row.id, rules_hash=row.rules_hash, text=row.text, finished_at=aware(row.finished_at))
