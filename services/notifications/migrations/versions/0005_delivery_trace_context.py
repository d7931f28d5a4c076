"""The W3C trace context of each journalled event and of each delivery.

`event_journal.traceparent` and `tracestate` keep the context of the consumer's
span for the event; fan-out copies them onto each of the event's `deliveries`,
whose webhook attempts continue that trace. Rows from before stay empty: their
attempts start traces of their own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("event_journal", "deliveries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))
            batch.add_column(sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tracestate")
            batch.drop_column("traceparent")
