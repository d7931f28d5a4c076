"""The triage queue, triage outcome, withdrawal and lead professional on `referrals`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NEW_COLUMNS = (
    ("level_of_need", sa.String(30)),
    ("route", sa.String(30)),
    ("locality", sa.String(100)),
    ("case_id", sa.String(36)),
    ("decided_at", sa.DateTime(timezone=True)),
    ("withdrawn_at", sa.DateTime(timezone=True)),
    ("withdrawal_reason", sa.Text()),
    ("allocated_at", sa.DateTime(timezone=True)),
    ("lead_professional_name", sa.String(100)),
    ("lead_professional_role", sa.String(200)),
    ("lead_professional_team", sa.String(200)),
    ("lead_professional_email", sa.String(254)),
    ("lead_professional_phone", sa.String(30)),
)


def upgrade() -> None:
    # Added nullable, filled from urgency for the referrals already there, then required.
    op.add_column("referrals", sa.Column("urgency_rank", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE referrals SET urgency_rank = CASE urgency "
        "WHEN 'immediate' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END"
    )
    with op.batch_alter_table("referrals") as batch:
        batch.alter_column("urgency_rank", existing_type=sa.Integer(), nullable=False)
        for name, type_ in _NEW_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_referrals_case_id", "referrals", ["case_id"])
    op.create_index(
        "ix_referrals_queue",
        "referrals",
        ["status", "urgency_rank", "received_at", "referral_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_referrals_queue", table_name="referrals")
    op.drop_index("ix_referrals_case_id", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        for name, _ in reversed(_NEW_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("urgency_rank")
