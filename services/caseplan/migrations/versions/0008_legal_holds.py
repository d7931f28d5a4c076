"""Legal holds: families whose records the retention schedule must not dispose of (issue 16).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("family_id", sa.String(36), primary_key=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("placed_by", sa.String(200), nullable=False),
        sa.Column("placed_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("legal_holds")
