"""Where each referral the front door moved between families is now.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral_families",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chronology_subject", "chronology_entries", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_chronology_subject", table_name="chronology_entries")
    op.drop_table("referral_families")
