"""Matching (known people, family cases, possible matches) and cumulative police concern.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

`known_people` and `family_cases` start empty: on a database that already holds
referrals, rebuild the `front_door_records` projection after upgrading
(`earlyhelp rebuild intake front_door_records`) so that matching sees them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NULLABLE_COLUMNS = (
    ("re_referral_of_case_id", sa.String(36)),
    ("police_grade", sa.String(10)),
    ("escalated_in", sa.String(36)),
)
_COUNTED_COLUMNS = (
    ("matched_existing_family", sa.Boolean(), sa.false()),
    ("joins_open_case", sa.Boolean(), sa.false()),
    ("pending_matches", sa.Integer(), sa.text("0")),
    ("escalated_notices", sa.Integer(), sa.text("0")),
)


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        for name, type_ in _NULLABLE_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        for name, type_, default in _COUNTED_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    op.create_index(
        "ix_referrals_held_notices",
        "referrals",
        ["family_id", "status", "police_grade", "received_at"],
    )
    op.create_table(
        "possible_matches",
        sa.Column("match_id", sa.String(36), primary_key=True),
        sa.Column("referral_id", sa.String(36), nullable=False, index=True),
        sa.Column("person_id", sa.String(36), nullable=False),
        sa.Column("candidate_person_id", sa.String(36), nullable=False),
        sa.Column("candidate_family_id", sa.String(36), nullable=False),
        sa.Column("agrees_on", sa.String(200), nullable=False),
        sa.Column("differs_on", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_table(
        "known_people",
        sa.Column("record_id", sa.String(36), primary_key=True),
        sa.Column("person_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("given_name", sa.String(100), nullable=False),
        sa.Column("family_name", sa.String(100), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("postcode", sa.String(8), nullable=False),
        sa.Column("nhs_number", sa.String(10), nullable=True, index=True),
        sa.Column("upn", sa.String(13), nullable=True, index=True),
    )
    op.create_index("ix_known_people_born", "known_people", ["family_name", "date_of_birth"])
    op.create_table(
        "family_cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("family_cases")
    op.drop_index("ix_known_people_born", table_name="known_people")
    op.drop_table("known_people")
    op.drop_table("possible_matches")
    op.drop_index("ix_referrals_held_notices", table_name="referrals")
    with op.batch_alter_table("referrals") as batch:
        for name, _, _ in reversed(_COUNTED_COLUMNS):
            batch.drop_column(name)
        for name, _ in reversed(_NULLABLE_COLUMNS):
            batch.drop_column(name)
