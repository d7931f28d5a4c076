"""Cases: drafts, allocation's inputs, case view and reviews; who is involved with a family.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "family_involvement",
        sa.Column("family_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(30), primary_key=True),
        sa.Column("party_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("detail", sa.String(400), nullable=True),
        sa.Column("first_seen_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
    )
    op.create_table(
        "family_referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("referral_source", sa.String(10), nullable=False),
        sa.Column("children", sa.Text, nullable=False),
        sa.Column("triaged_at", _TIME, nullable=True),
        sa.Column("route", sa.String(40), nullable=True),
        sa.Column("locality", sa.String(100), nullable=True),
        sa.Column("case_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_family_referrals_case", "family_referrals", ["case_id"])
    op.create_table(
        "case_inputs",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("data_json", sa.Text, nullable=False),
    )
    op.create_index("ix_case_inputs_case", "case_inputs", ["case_id", "occurred_at"])
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("locality", sa.String(100), nullable=True),
        sa.Column("team_id", sa.String(100), nullable=True),
        sa.Column("lead_worker_id", sa.String(36), nullable=True),
        sa.Column("lead_email", sa.String(254), nullable=True),
        sa.Column("lead_name", sa.String(100), nullable=True),
        sa.Column("opened_at", _TIME, nullable=True),
        sa.Column("allocated_at", _TIME, nullable=True),
        sa.Column("episode", sa.Integer, nullable=False),
        sa.Column("re_referral", sa.Boolean, nullable=False),
        sa.Column("assessed_at", _TIME, nullable=True),
        sa.Column("needs_count", sa.Integer, nullable=False),
        sa.Column("plan_activated_at", _TIME, nullable=True),
        sa.Column("service_start", sa.Date, nullable=True),
        sa.Column("review_due", sa.Date, nullable=True),
        sa.Column("reviews", sa.Integer, nullable=False),
        sa.Column("stepped_up_at", _TIME, nullable=True),
        sa.Column("stepped_down_at", _TIME, nullable=True),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.Column("closure_reason", sa.String(40), nullable=True),
        sa.Column("all_needs_achieved", sa.Boolean, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_index("ix_cases_family", "cases", ["family_id"])
    op.create_index("ix_cases_review_due", "cases", ["status", "review_due"])
    op.create_table(
        "case_reviews",
        sa.Column("review_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("locality", sa.String(100), nullable=True),
        sa.Column("reviewed_at", _TIME, nullable=False),
        sa.Column("due", sa.Date, nullable=True),
        sa.Column("on_time", sa.Boolean, nullable=False),
    )
    op.create_index("ix_case_reviews_reviewed_at", "case_reviews", ["reviewed_at"])
    op.create_table(
        "assessment_drafts",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("draft", sa.Text, nullable=False),
        sa.Column("saved_by", sa.String(200), nullable=False),
        sa.Column("saved_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("assessment_drafts")
    op.drop_index("ix_case_reviews_reviewed_at", table_name="case_reviews")
    op.drop_table("case_reviews")
    op.drop_index("ix_cases_review_due", table_name="cases")
    op.drop_index("ix_cases_family", table_name="cases")
    op.drop_table("cases")
    op.drop_index("ix_case_inputs_case", table_name="case_inputs")
    op.drop_table("case_inputs")
    op.drop_index("ix_family_referrals_case", table_name="family_referrals")
    op.drop_table("family_referrals")
    op.drop_table("family_involvement")
