"""Partner ids as strings: ``links.associate_id`` and ``journal.associate_id`` hold a SuperOffice
AssociateId (its decimal digits) or a SCIM ``id`` (any string), so both targets fit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = ("links", "journal")


def upgrade() -> None:
    """Widen ``associate_id`` of links and journal from BIGINT to VARCHAR(255), keeping every value."""
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "associate_id",
                existing_type=sa.BigInteger(),
                type_=sa.String(255),
                existing_nullable=table == "journal",
                postgresql_using="associate_id::varchar(255)",
            )


def downgrade() -> None:
    """Back to BIGINT (fails where a stored id is not an integer, e.g. a SCIM target's)."""
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "associate_id",
                existing_type=sa.String(255),
                type_=sa.BigInteger(),
                existing_nullable=table == "journal",
                postgresql_using="associate_id::bigint",
            )
