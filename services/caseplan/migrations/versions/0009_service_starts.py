"""The day a service of the episode's package actually started (issue 21): the 4-week
measure counts from the assessment to it, no longer to the start date the panel planned.

Cases projected before this revision fold their package afresh with their next event, and
show no started service until one is recorded.

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
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("service_started_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("service_started_on")
