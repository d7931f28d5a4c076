"""Each event names the family's event it follows (issue 19): consumers of several
topics restore a family's order by waiting for a known predecessor, not for a fixed time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

from hub.migrations import add_family_order_v2, drop_family_order_v2

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_family_order_v2(op)


def downgrade() -> None:
    drop_family_order_v2(op)
