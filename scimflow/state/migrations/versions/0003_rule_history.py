"""Rule history: each plan's rules (content hash) and the rules' text, kept once per hash, so that a run
whose rules changed since the last applied run can say so and show the difference (``scimflow rules diff``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``rule_texts`` (hash → text) and ``plan_rules`` (which rules each plan hash was planned with)."""
    op.create_table(
        "rule_texts",
        sa.Column("rules_hash", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_seen", _ts, nullable=False),
    )
    op.create_table(
        "plan_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("rules_hash", sa.String(64), nullable=False),
        sa.Column("planned_at", _ts, nullable=False),
    )
    op.create_index("ix_plan_rules_plan_hash", "plan_rules", ["plan_hash", "planned_at"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_plan_rules_plan_hash", table_name="plan_rules")
    op.drop_table("plan_rules")
    op.drop_table("rule_texts")
