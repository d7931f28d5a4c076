"""Sharing with the team around the family under the case's consent (issue 14).

Adds what the policy now asks of each case (its team, consent, override and the
schools of its children), when each referral's triage opened its case, and the
record of disclosures. Drops the UPNs referrals listed: no rule reads them any
more (a school relation comes from the case), so they are not kept.

The new read-model tables start empty: rebuild the projections (`earlyhelp rebuild
notifications`) to fill them from the topics.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("referral_facts") as batch:
        batch.add_column(sa.Column("triaged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "team_members",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(64), primary_key=True),
        sa.Column("added_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "case_consents",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "case_overrides",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "case_schools",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("school_id", sa.String(64), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "disclosures",
        sa.Column("id", _POSITION, primary_key=True, autoincrement=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("partner_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("rules", sa.String(500), nullable=False),
        sa.Column("basis", sa.String(20), nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_disclosures_family_id", "disclosures", ["family_id"])
    op.drop_index("ix_referral_pupils_upn", table_name="referral_pupils")
    op.drop_table("referral_pupils")


def downgrade() -> None:
    op.create_table(
        "referral_pupils",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("upn", sa.String(13), primary_key=True),
    )
    op.create_index("ix_referral_pupils_upn", "referral_pupils", ["upn"])
    op.drop_index("ix_disclosures_family_id", table_name="disclosures")
    for table in ("disclosures", "case_schools", "case_overrides", "case_consents", "team_members"):
        op.drop_table(table)
    with op.batch_alter_table("referral_facts") as batch:
        batch.drop_column("triaged_at")
