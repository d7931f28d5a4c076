"""Allocation's read models."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from hub.contracts.identifiers import postcode_district
from hub.contracts.intake import ReferralReceived
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

metadata = MetaData()

# Referrals at the front door, by postcode district: what the localities can
# expect before triage sends cases their way.
incoming_referrals = Table(
    "incoming_referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("urgency", String(20), nullable=False),
    Column("postcode_district", String(4), nullable=False, index=True),
    Column("children_count", Integer, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)

incoming = Projection("incoming_referrals", [incoming_referrals])
_INSERT_INCOMING = insert(incoming_referrals)


@incoming.on(ReferralReceived)
def _referral_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    conn.execute(
        _INSERT_INCOMING,
        {
            "referral_id": str(event.referral_id),
            "family_id": str(event.family_id),
            "urgency": event.urgency.value,
            "postcode_district": postcode_district(event.children[0].address.postcode),
            "children_count": len(event.children),
            "received_at": event.received_at,
        },
    )


PROJECTIONS = (incoming,)
