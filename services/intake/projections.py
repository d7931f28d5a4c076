"""Intake's read models, fed by its own events in the transaction that stores them."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from hub.contracts.intake import ReferralReceived
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

metadata = MetaData()

referrals = Table(
    "referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("status", String(30), nullable=False),
    Column("referral_source", String(3), nullable=False),
    Column("referrer_organisation_id", String(100), nullable=True, index=True),
    Column("partner_reference", String(200), nullable=True),
    Column("urgency", String(20), nullable=False),
    Column("children_count", Integer, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

referral_status = Projection("referral_status", [referrals])
_INSERT_REFERRAL = insert(referrals)


@referral_status.on(ReferralReceived)
def _received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    conn.execute(
        _INSERT_REFERRAL,
        {
            "referral_id": str(event.referral_id),
            "family_id": str(event.family_id),
            "status": "received",
            "referral_source": event.referral_source.value,
            "referrer_organisation_id": (
                event.referrer.organisation_id if event.referrer else None
            ),
            "partner_reference": event.partner_reference,
            "urgency": event.urgency.value,
            "children_count": len(event.children),
            "received_at": event.received_at,
            "updated_at": meta.occurred_at,
        },
    )


PROJECTIONS = (referral_status,)
