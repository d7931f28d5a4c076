"""Operation Encompass notices, for the performance report's measures per school (issue 22).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

The table starts empty; the notices arrive from intake's topic. On a hub that issued
notices before this upgrade, rebuild the `chronology` projection to count them.
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encompass_notices",
        sa.Column("notice_id", sa.String(36), primary_key=True),
        sa.Column("school_id", sa.String(64), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("due_by", UtcDateTime(), nullable=False),
        sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_encompass_notices_issued", "encompass_notices", ["issued_at"])


def downgrade() -> None:
    op.drop_index("ix_encompass_notices_issued", table_name="encompass_notices")
    op.drop_table("encompass_notices")
