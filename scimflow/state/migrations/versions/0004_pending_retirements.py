"""Pending retirements: users whose deprovisioning waits out a grace period
(``deprovision: {action: retire, after: 7d}``), one row per partner user.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``pending_retirements`` (partner id → key, Entra id, first seen, due, reason)."""
    op.create_table(
        "pending_retirements",
        sa.Column("partner_id", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("entra_id", sa.String(255), nullable=True),
        sa.Column("first_seen", _ts, nullable=False),
        sa.Column("due", _ts, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("updated_at", _ts, nullable=False),
    )


def downgrade() -> None:
    """Drop the table (pending retirements are forgotten: the next plan starts their grace again)."""
    op.drop_table("pending_retirements")
