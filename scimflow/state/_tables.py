"""The state store's tables (SQLAlchemy Core), as the newest migration leaves them.

The migrations under ``migrations/versions`` create these tables; they never import this module (a
migration must keep meaning what it meant when it was written). ``tests/test_state.py`` checks that the
migrated schema and this metadata agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "JOURNAL_STATUSES",
    "approvals",
    "baseline",
    "journal",
    "links",
    "metadata",
    "pending_retirements",
    "plan_rules",
    "rule_texts",
    "runs",
]

#: Every status a journal row may have.
JOURNAL_STATUSES: tuple[str, ...] = ("pending", "applied", "drifted", "failed", "held", "verified", "rejected")

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

metadata = sa.MetaData()

links = sa.Table(
    "links",
    metadata,
    sa.Column("entra_id", sa.String(255), primary_key=True),
    sa.Column("associate_id", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("plan_hash", sa.String(64), nullable=True),
    sa.Column("source_users", sa.Integer, nullable=True),
    sa.Column("summary", JsonType, nullable=True),
    sa.Column("flow_run_id", sa.String(64), nullable=True),
    sa.Index("ix_runs_status_finished", "status", "finished_at"),
)

journal = sa.Table(
    "journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("entra_id", sa.String(255), nullable=True),
    sa.Column("associate_id", sa.String(255), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.UniqueConstraint("plan_hash", "key", "action", name="uq_journal_plan_key_action"),
    sa.CheckConstraint(
        "status IN ('pending', 'applied', 'drifted', 'failed', 'held', 'verified', 'rejected')",
        name="ck_journal_status",
    ),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("approver", sa.String(255), nullable=True),
    sa.Column("approve", sa.Boolean, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("hold_actions", JsonType, nullable=False),
    sa.Column("hold_users", JsonType, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Index("ix_approvals_plan_hash", "plan_hash"),
)

baseline = sa.Table(
    "baseline",
    metadata,
    sa.Column("tenant", sa.String(255), primary_key=True),
    sa.Column("frame", sa.LargeBinary, nullable=False),
    sa.Column("users_link", sa.Text, nullable=True),
    sa.Column("groups_link", sa.Text, nullable=True),
    sa.Column("user_count", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# 0004: users whose deprovisioning waits out a grace period (scimflow/state/_pending.py)
pending_retirements = sa.Table(
    "pending_retirements",
    metadata,
    sa.Column("partner_id", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("entra_id", sa.String(255), nullable=True),
    sa.Column("first_seen", Timestamp, nullable=False),
    sa.Column("due", Timestamp, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# 0003: the rules each plan was made with (content hash) and the rules' text, once per hash
rule_texts = sa.Table(
    "rule_texts",
    metadata,
    sa.Column("rules_hash", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("first_seen", Timestamp, nullable=False),
)

plan_rules = sa.Table(
    "plan_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("rules_hash", sa.String(64), nullable=False),
    sa.Column("planned_at", Timestamp, nullable=False),
    sa.Index("ix_plan_rules_plan_hash", "plan_hash", "planned_at"),
)
