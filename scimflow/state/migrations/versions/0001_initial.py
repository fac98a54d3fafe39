"""The initial state schema: links, runs, journal, approvals, baseline.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(JSONB(), "postgresql")
_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "links",
        sa.Column("entra_id", sa.String(255), primary_key=True),
        sa.Column("associate_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.UniqueConstraint("associate_id"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("started_at", _ts, nullable=False),
        sa.Column("finished_at", _ts, nullable=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("plan_hash", sa.String(64), nullable=True),
        sa.Column("source_users", sa.Integer, nullable=True),
        sa.Column("summary", _json, nullable=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_runs_status_finished", "runs", ["status", "finished_at"])
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("entra_id", sa.String(255), nullable=True),
        sa.Column("associate_id", sa.BigInteger, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("at", _ts, nullable=False),
        sa.UniqueConstraint("plan_hash", "key", "action", name="uq_journal_plan_key_action"),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'drifted', 'failed', 'held', 'verified', 'rejected')",
            name="ck_journal_status",
        ),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=True),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("approver", sa.String(255), nullable=True),
        sa.Column("approve", sa.Boolean, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("hold_actions", _json, nullable=False),
        sa.Column("hold_users", _json, nullable=False),
        sa.Column("at", _ts, nullable=False),
    )
    op.create_index("ix_approvals_plan_hash", "approvals", ["plan_hash"])
    op.create_table(
        "baseline",
        sa.Column("tenant", sa.String(255), primary_key=True),
        sa.Column("frame", sa.LargeBinary, nullable=False),
        sa.Column("users_link", sa.Text, nullable=True),
        sa.Column("groups_link", sa.Text, nullable=True),
        sa.Column("user_count", sa.Integer, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
    )


def downgrade() -> None:
    """Drop every table of the first schema."""
    for name in ("baseline", "approvals", "journal", "runs", "links"):
        op.drop_table(name)
