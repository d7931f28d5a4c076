"""Operation Encompass: each notice's school, deadline and state, and children's schools.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Both tables start empty. `child_schools` is fed by case plan's ChildSchoolRecorded
events: on a hub that already holds them, rebuild the `encompass` projection after
upgrading (`earlyhelp rebuild intake encompass`) so that notices find those schools.
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encompass_notices",
        sa.Column("notice_id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("police_force", sa.String(64), nullable=False),
        sa.Column("school_id", sa.String(64), nullable=True),
        sa.Column("school_urn", sa.String(6), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("due_by", UtcDateTime(), nullable=False),
        sa.Column("acknowledged_at", UtcDateTime(), nullable=True),
        sa.Column("acknowledged_in_time", sa.Boolean(), nullable=True),
        sa.Column("alerted_at", UtcDateTime(), nullable=True),
        sa.Column("alert_reason", sa.String(20), nullable=True),
    )
    op.create_index("ix_encompass_notices_referral_id", "encompass_notices", ["referral_id"])
    op.create_index("ix_encompass_notices_school_id", "encompass_notices", ["school_id"])
    op.create_index(
        "ix_encompass_notices_watch",
        "encompass_notices",
        ["acknowledged_at", "alert_reason", "due_by"],
    )
    op.create_table(
        "child_schools",
        sa.Column("person_id", sa.String(36), primary_key=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("child_schools")
    op.drop_index("ix_encompass_notices_watch", table_name="encompass_notices")
    op.drop_index("ix_encompass_notices_school_id", table_name="encompass_notices")
    op.drop_index("ix_encompass_notices_referral_id", table_name="encompass_notices")
    op.drop_table("encompass_notices")
