"""The allocation queue, caseloads, the registry, panels, agendas and providers' places.

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


def upgrade() -> None:
    # Referrals projected before 0003 have no dates of birth or factors: their
    # cases are queued with none, and auto-allocation then matches on locality alone.
    with op.batch_alter_table("incoming_referrals") as batch:
        batch.add_column(sa.Column("children_dates_of_birth", sa.Text, nullable=True))
        batch.add_column(sa.Column("concern_factors", sa.Text, nullable=True))

    op.create_table(
        "allocation_cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False, index=True),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("locality", sa.String(64), nullable=True),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("urgency_rank", sa.Integer, nullable=False),
        sa.Column("children_dates_of_birth", sa.Text, nullable=False),
        sa.Column("concern_factors", sa.Text, nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("worker_id", sa.String(36), nullable=True, index=True),
        sa.Column("team_id", sa.String(64), nullable=True, index=True),
        sa.Column("lead_professional_name", sa.String(100), nullable=True),
        sa.Column("first_allocated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("allocated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_allocation_cases_queue",
        "allocation_cases",
        ["status", "urgency_rank", "queued_at", "case_id"],
    )
    op.create_table(
        "registry_entries",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("authority_id", sa.String(64), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "panels",
        sa.Column("panel_id", sa.String(36), primary_key=True),
        sa.Column("locality", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("meets_on", sa.Date, nullable=False),
        sa.Column("members", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_panels_locality_date", "panels", ["locality", "meets_on"])
    op.create_table(
        "panel_agenda",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("assessment_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("panel_id", sa.String(36), nullable=True, index=True),
        sa.Column("locality", sa.String(64), nullable=True, index=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
    )
    op.create_table(
        "panel_decisions",
        sa.Column("panel_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review_date", sa.Date, nullable=False),
        sa.Column("worker_id", sa.String(36), nullable=False),
        sa.Column("lead_professional_name", sa.String(100), nullable=False),
        sa.Column("package", sa.Text, nullable=False),
        sa.Column("members_present", sa.Text, nullable=False),
    )
    op.create_table(
        "commissioned_places",
        sa.Column("panel_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_commissioned_places_service", "commissioned_places", ["provider_id", "service"]
    )


def downgrade() -> None:
    op.drop_index("ix_commissioned_places_service", table_name="commissioned_places")
    op.drop_table("commissioned_places")
    op.drop_table("panel_decisions")
    op.drop_table("panel_agenda")
    op.drop_index("ix_panels_locality_date", table_name="panels")
    op.drop_table("panels")
    op.drop_table("registry_entries")
    op.drop_index("ix_allocation_cases_queue", table_name="allocation_cases")
    op.drop_table("allocation_cases")
    with op.batch_alter_table("incoming_referrals") as batch:
        batch.drop_column("concern_factors")
        batch.drop_column("children_dates_of_birth")
