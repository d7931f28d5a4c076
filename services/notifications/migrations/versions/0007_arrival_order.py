"""Facts that arrive out of order: a referral's later events before the referral, and
review dates and leads set by events of different topics.

Rows written before this revision were all written by the referral itself
(`received` true); their review dates and leads keep no time (the next event sets one).

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
    with op.batch_alter_table("referral_facts") as batch:
        batch.add_column(
            sa.Column("received", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("family_moved_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("case_reviews") as batch:
        batch.add_column(sa.Column("review_set_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lead_set_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_reviews") as batch:
        batch.drop_column("lead_set_at")
        batch.drop_column("review_set_at")
    with op.batch_alter_table("referral_facts") as batch:
        batch.drop_column("family_moved_at")
        batch.drop_column("received")
