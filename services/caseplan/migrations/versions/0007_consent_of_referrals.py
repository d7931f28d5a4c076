"""The consent each referral carried, and whether its triage joined an open case: the
consent of the referral that opened a case's episode stands until staff record, narrow
or withdraw it (issue 14).

Referrals projected before this revision keep no consent: a case they opened shows none
until staff record it, or until `earlyhelp rebuild caseplan` projects them again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("family_referrals") as batch:
        batch.add_column(sa.Column("consent", sa.Text(), nullable=True))
        batch.add_column(sa.Column("joins_open_case", sa.Boolean(), nullable=True))
    with op.batch_alter_table("early_triages") as batch:
        batch.add_column(sa.Column("joins_open_case", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("early_triages") as batch:
        batch.drop_column("joins_open_case")
    with op.batch_alter_table("family_referrals") as batch:
        batch.drop_column("joins_open_case")
        batch.drop_column("consent")
