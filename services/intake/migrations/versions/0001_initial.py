"""Hub tables and the referral status read model.

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
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("referral_source", sa.String(3), nullable=False),
        sa.Column("referrer_organisation_id", sa.String(100), nullable=True, index=True),
        sa.Column("partner_reference", sa.String(200), nullable=True),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("children_count", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("referrals")
    drop_hub_tables_v1(op)
