"""Which case each triaged referral went to, so that a referral arriving after its triage
completes its case (children, concerns, urgency).

Cases queued before this revision know their first referral only; the rows for them
are filled from `allocation_cases`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queued_referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False, index=True),
    )
    op.execute(
        "INSERT INTO queued_referrals (referral_id, case_id) "
        "SELECT referral_id, case_id FROM allocation_cases WHERE referral_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("queued_referrals")
