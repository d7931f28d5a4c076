"""Each event names the family's event it follows (issue 19): consumers of several
topics restore a family's order by waiting for a known predecessor, not for a fixed time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from hub.migrations import add_family_order_v2, drop_family_order_v2

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_family_order_v2(op)
    # The journal keeps what each event follows: fan-out waits for that event only.
    with op.batch_alter_table("event_journal") as batch:
        batch.add_column(sa.Column("follows", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_journal") as batch:
        batch.drop_column("follows")
    drop_family_order_v2(op)
