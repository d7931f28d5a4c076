"""Intake's read models: fed by its own events in the transaction that stores them,
and by allocation's `CaseAllocated` from Kafka (who the family's lead professional is).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, insert, update

from hub.contracts.allocation import CaseAllocated
from hub.contracts.codes import Urgency
from hub.contracts.intake import ReferralReceived, ReferralTriaged, ReferralWithdrawn
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

metadata = MetaData()

# The queue's order: the most urgent first. Stored, so that keyset pagination
# can walk an index instead of sorting every referral on each page.
URGENCY_RANK = {Urgency.IMMEDIATE: 0, Urgency.URGENT: 1, Urgency.ROUTINE: 2}

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
    # 0003: the queue, the triage outcome, the withdrawal and the allocation.
    Column("urgency_rank", Integer, nullable=False),
    Column("level_of_need", String(30), nullable=True),
    Column("route", String(30), nullable=True),
    Column("locality", String(100), nullable=True),
    Column("case_id", String(36), nullable=True, index=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("withdrawn_at", UtcDateTime(), nullable=True),
    Column("withdrawal_reason", Text, nullable=True),
    Column("allocated_at", UtcDateTime(), nullable=True),
    Column("lead_professional_name", String(100), nullable=True),
    Column("lead_professional_role", String(200), nullable=True),
    Column("lead_professional_team", String(200), nullable=True),
    Column("lead_professional_email", String(254), nullable=True),
    Column("lead_professional_phone", String(30), nullable=True),
)
Index(
    "ix_referrals_queue",
    referrals.c.status,
    referrals.c.urgency_rank,
    referrals.c.received_at,
    referrals.c.referral_id,
)

referral_status = Projection("referral_status", [referrals])
_INSERT_REFERRAL = insert(referrals)


def _update(referral_id: str):
    return update(referrals).where(referrals.c.referral_id == referral_id)


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
            "urgency_rank": URGENCY_RANK[event.urgency],
            "children_count": len(event.children),
            "received_at": event.received_at,
            "updated_at": meta.occurred_at,
        },
    )


@referral_status.on(ReferralTriaged)
def _triaged(conn, event: ReferralTriaged, meta: EventMeta) -> None:
    conn.execute(
        _update(str(event.referral_id)).values(
            status="triaged",
            level_of_need=event.level_of_need.value,
            route=event.route.value,
            locality=event.locality,
            case_id=str(event.case_id) if event.case_id else None,
            decided_at=event.decided_at,
            updated_at=meta.occurred_at,
        )
    )


@referral_status.on(ReferralWithdrawn)
def _withdrawn(conn, event: ReferralWithdrawn, meta: EventMeta) -> None:
    conn.execute(
        _update(str(event.referral_id)).values(
            status="withdrawn",
            withdrawn_at=event.withdrawn_at,
            withdrawal_reason=event.reason,
            updated_at=meta.occurred_at,
        )
    )


@referral_status.on(CaseAllocated)
def _allocated(conn, event: CaseAllocated, meta: EventMeta) -> None:
    """The lead professional of the case a referral opened: what its referrer is told.

    A reallocation replaces the earlier lead professional. A case no referral
    here opened (a step-down from social care, say) changes nothing.
    """
    lead = event.lead_professional
    conn.execute(
        update(referrals)
        .where(referrals.c.case_id == str(event.case_id))
        .values(
            allocated_at=event.allocated_at,
            lead_professional_name=lead.name,
            lead_professional_role=lead.role,
            lead_professional_team=lead.team_name,
            lead_professional_email=lead.email,
            lead_professional_phone=lead.phone,
            updated_at=meta.occurred_at,
        )
    )


PROJECTIONS = (referral_status,)
