"""E-mails that hold restricted detail carry their disclosure-record row (issue 22).

An Operation Encompass notice e-mailed to a school's designated safeguarding lead is
a disclosure like a webhook delivery: the row is written when the e-mail is sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("disclosure", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("disclosure")
