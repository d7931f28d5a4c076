"""Hub tables and the family chronology.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from hub.migrations import create_hub_tables_v1, drop_hub_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_hub_tables_v1(op)
    op.create_table(
        "chronology_entries",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("service", sa.String(50), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_chronology_family_order",
        "chronology_entries",
        ["family_id", "occurred_at", "event_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_chronology_family_order", table_name="chronology_entries")
    op.drop_table("chronology_entries")
    drop_hub_tables_v1(op)
