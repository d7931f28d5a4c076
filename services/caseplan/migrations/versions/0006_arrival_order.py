"""Events that arrive before their referral: triages kept until it comes, and who referred,
so that their involvement with a family follows the referral when the front door moves it.

Referrals projected before this revision keep no referrer: their involvement stays where
it was recorded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("family_referrals") as batch:
        batch.add_column(sa.Column("referrer_id", sa.String(200), nullable=True))
    op.create_table(
        "early_triages",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(40), nullable=False),
        sa.Column("locality", sa.String(100), nullable=True),
        sa.Column("case_id", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("early_triages")
    with op.batch_alter_table("family_referrals") as batch:
        batch.drop_column("referrer_id")
