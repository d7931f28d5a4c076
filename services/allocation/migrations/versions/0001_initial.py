"""Hub tables and the incoming referrals read model.

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
        "incoming_referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("postcode_district", sa.String(4), nullable=False, index=True),
        sa.Column("children_count", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("incoming_referrals")
    drop_hub_tables_v1(op)
