"""Notifications' read models."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, insert

from hub.contracts.intake import ReferralReceived
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

metadata = MetaData()

# Who referred each referral, and the latest thing that happened to it: the
# basis for telling every referrer what became of their referral.
referral_feedback = Table(
    "referral_feedback",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("referrer_organisation_id", String(100), nullable=True, index=True),
    Column("last_event_type", String(200), nullable=False),
    Column("last_event_at", UtcDateTime(), nullable=False),
)

feedback = Projection("referral_feedback", [referral_feedback])
_INSERT_FEEDBACK = insert(referral_feedback)


@feedback.on(ReferralReceived)
def _referral_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    conn.execute(
        _INSERT_FEEDBACK,
        {
            "referral_id": str(event.referral_id),
            "family_id": str(event.family_id),
            "referrer_organisation_id": event.referrer.organisation_id if event.referrer else None,
            "last_event_type": meta.event_type,
            "last_event_at": meta.occurred_at,
        },
    )


PROJECTIONS = (feedback,)
