"""The front door's consultations, counted in the performance report (issue 21).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "front_door_consultations",
        sa.Column("consultation_id", sa.String(36), primary_key=True),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("organisation_type", sa.String(40), nullable=True),
        sa.Column("advice", sa.String(30), nullable=True),
        sa.Column("advised_at", UtcDateTime(), nullable=True),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("referred_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("front_door_consultations")
