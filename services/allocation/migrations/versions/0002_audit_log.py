"""The audit log of reads of children's records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

from hub.migrations import create_audit_log_v1, drop_audit_log_v1

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log_v1(op)


def downgrade() -> None:
    drop_audit_log_v1(op)
