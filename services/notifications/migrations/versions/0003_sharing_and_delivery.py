"""Subscriptions, the sharing facts and event journal, deliveries, circuits and e-mail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from hub.sql import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_journal",
        sa.Column("seq", Position, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("occurred_at", UtcDateTime(), nullable=False, index=True),
        sa.Column("journalled_at", UtcDateTime(), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("fanned_out", sa.Boolean, nullable=False),
    )
    op.create_index("ix_event_journal_pending", "event_journal", ["fanned_out", "seq"])
    op.create_table(
        "referral_facts",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("referrer_id", sa.String(64), nullable=True, index=True),
        sa.Column("partner_reference", sa.String(200), nullable=True),
        sa.Column("referrer_email", sa.String(254), nullable=True),
        sa.Column("case_id", sa.String(36), nullable=True, index=True),
        sa.Column("consent_to_share", sa.Boolean, nullable=False),
        sa.Column("safeguarding_override", sa.Boolean, nullable=False),
    )
    op.create_table(
        "referral_pupils",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("upn", sa.String(13), primary_key=True),
    )
    op.create_index("ix_referral_pupils_upn", "referral_pupils", ["upn"])
    op.create_table(
        "family_facts",
        sa.Column("family_id", sa.String(36), primary_key=True),
        sa.Column("consent_withdrawn", sa.Boolean, nullable=False),
    )
    op.create_table(
        "known_cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "case_reviews",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("review_date", sa.Date, nullable=True, index=True),
        sa.Column("lead_name", sa.String(100), nullable=True),
        sa.Column("lead_email", sa.String(254), nullable=True),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.String(36), primary_key=True),
        sa.Column("partner_id", sa.String(64), nullable=False, index=True),
        sa.Column("partner_type", sa.String(30), nullable=True),
        sa.Column("event_types", sa.Text, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("endpoint", sa.String(300), nullable=False),
        sa.Column("topic", sa.String(249), nullable=True),
        sa.Column("secret", sa.String(100), nullable=True),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column("previous_secret_until", UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", Position, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("first_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.Column("leased_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_deliveries_subscription_event"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index(
        "ix_deliveries_family_order",
        "deliveries",
        ["subscription_id", "family_id", "occurred_at"],
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", Position, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", Position, nullable=False, index=True),
        sa.Column("attempted_at", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
    )
    op.create_table(
        "endpoints",
        sa.Column("endpoint", sa.String(300), primary_key=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("open_until", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "emails",
        sa.Column("message_key", sa.String(120), primary_key=True),
        sa.Column("recipient", sa.String(254), primary_key=True),
        sa.Column("template", sa.String(50), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("leased_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_emails_due", "emails", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in (
        "emails",
        "endpoints",
        "delivery_attempts",
        "deliveries",
        "subscriptions",
        "case_reviews",
        "known_cases",
        "family_facts",
        "referral_pupils",
        "referral_facts",
        "event_journal",
    ):
        op.drop_table(table)
