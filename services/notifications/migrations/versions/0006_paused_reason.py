"""Why a subscription is paused: by its partner, or because its endpoint answered 410 Gone.

Subscriptions paused before this revision were all paused by their partner.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("paused_reason", sa.String(20), nullable=True))
    op.execute("UPDATE subscriptions SET paused_reason = 'partner' WHERE status = 'paused'")


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("paused_reason")
