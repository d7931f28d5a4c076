"""Consultations: practitioners asking the front door for advice without referring (issue 21).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consultations",
        sa.Column("consultation_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("organisation_id", sa.String(100), nullable=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=True),
        sa.Column("advice", sa.Text(), nullable=True),
        sa.Column("advised_at", UtcDateTime(), nullable=True),
        sa.Column("advised_by", sa.String(200), nullable=True),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("referred_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_consultations_organisation_id", "consultations", ["organisation_id"])
    op.create_index("ix_consultations_queue", "consultations", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_consultations_queue", "consultations")
    op.drop_index("ix_consultations_organisation_id", "consultations")
    op.drop_table("consultations")
