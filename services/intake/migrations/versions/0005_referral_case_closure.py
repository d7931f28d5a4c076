"""The closure of the case each referral went to, for its referrer's view and FHIR Task.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Both columns start empty: on a database whose cases have already closed, rebuild the
`referral_status` projection after upgrading (`earlyhelp rebuild intake referral_status`)
so that those referrals show their closure.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("case_closed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closure_reason", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("closure_reason")
        batch.drop_column("case_closed_at")
