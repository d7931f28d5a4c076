"""Notifications' read models: the event journal and what the sharing policy knows of families.

The one projection follows every event type: it journals the event (fan-out and replays
read the journal) and keeps the facts the policy needs for later events that do
not carry them: who referred, with which consent, which children's UPNs, which
case each referral opened, and each case's next review.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, String, Table, insert, select, update

import hub.contracts  # noqa: F401  (registers every event type)
from hub.clock import utc_now
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.base import EventData
from hub.contracts.caseplan import CaseClosed, CaseSteppedDown, CaseSteppedUp, PlanReviewed
from hub.contracts.codes import ClosureReason, ConsentScope
from hub.contracts.intake import (
    MatchConfirmed,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
)
from hub.contracts.registry import EVENT_TYPES
from hub.observability import current_traceparent
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime, insert_if_absent
from notifications.tables import (
    case_reviews,
    event_journal,
    family_facts,
    known_cases,
    metadata,
    referral_facts,
    referral_pupils,
)

__all__ = ["PROJECTIONS", "metadata"]

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

# One projection for the whole read model. It keeps the name of the service's
# first projection, `referral_feedback`, so that databases which already hold its
# inbox and checkpoints go on from them.
sharing = Projection(
    "referral_feedback",
    [
        referral_feedback,
        event_journal,
        referral_facts,
        referral_pupils,
        family_facts,
        known_cases,
        case_reviews,
    ],
)
_INSERT_JOURNAL = insert(event_journal)


def _journal_and_learn(conn: Connection, event: EventData, meta: EventMeta) -> None:
    # Handlers run inside the consumer's span for the record: the deliveries of the
    # event continue from it.
    traceparent, tracestate = current_traceparent()
    conn.execute(
        _INSERT_JOURNAL,
        {
            "event_id": meta.event_id,
            "event_type": meta.event_type,
            "family_id": str(event.family_id),
            "subject": meta.subject,
            "case_id": str(case_id) if (case_id := getattr(event, "case_id", None)) else None,
            "occurred_at": meta.occurred_at,
            # When it was consumed: fan-out waits a moment for other topics (see fanout.py).
            "journalled_at": utc_now(),
            "data": event.model_dump_json(),
            "fanned_out": False,
            "traceparent": traceparent,
            "tracestate": tracestate,
        },
    )
    learn = _LEARNERS.get(type(event))
    if learn is not None:
        learn(conn, event, meta)


for _model in EVENT_TYPES.values():
    sharing.on(_model)(_journal_and_learn)


def _know_family(conn: Connection, family_id: str) -> None:
    insert_if_absent(conn, family_facts, {"family_id": family_id, "consent_withdrawn": False})


def _received(conn: Connection, event: ReferralReceived, meta: EventMeta) -> None:
    referral_id, family_id = str(event.referral_id), str(event.family_id)
    referrer = event.referrer
    conn.execute(
        insert(referral_feedback),
        {
            "referral_id": referral_id,
            "family_id": family_id,
            "referrer_organisation_id": referrer.organisation_id if referrer else None,
            "last_event_type": meta.event_type,
            "last_event_at": meta.occurred_at,
        },
    )
    scopes = event.consent.covers if event.consent else ()
    conn.execute(
        insert(referral_facts),
        {
            "referral_id": referral_id,
            "family_id": family_id,
            "referrer_id": referrer.organisation_id if referrer else None,
            "partner_reference": event.partner_reference,
            "referrer_email": referrer.email if referrer else None,
            "case_id": None,
            "consent_to_share": ConsentScope.SHARE_WITH_PARTNERS in scopes,
            "safeguarding_override": event.safeguarding_override is not None,
        },
    )
    upns = {child.upn for child in event.children if child.upn}
    for upn in sorted(upns):
        conn.execute(insert(referral_pupils), {"referral_id": referral_id, "upn": upn})
    _know_family(conn, family_id)


def _triaged(conn: Connection, event: ReferralTriaged, _meta: EventMeta) -> None:
    if event.case_id is not None:
        _know_case(conn, str(event.case_id), str(event.family_id))
        conn.execute(
            update(referral_facts)
            .where(referral_facts.c.referral_id == str(event.referral_id))
            .values(case_id=str(event.case_id))
        )


def _moved(conn: Connection, event: MatchConfirmed | ReferralUnlinked, _meta: EventMeta) -> None:
    """The referral now belongs to `family_id`; its consent and pupils go with it."""
    conn.execute(
        update(referral_facts)
        .where(referral_facts.c.referral_id == str(event.referral_id))
        .values(family_id=str(event.family_id))
    )
    _know_family(conn, str(event.family_id))


def _set_review(conn: Connection, case_id: str, family_id: str, **values) -> None:
    exists = conn.execute(
        select(case_reviews.c.case_id).where(case_reviews.c.case_id == case_id)
    ).first()
    if exists:
        conn.execute(update(case_reviews).where(case_reviews.c.case_id == case_id).values(values))
    else:
        row = {"review_date": None, "lead_name": None, "lead_email": None} | values
        conn.execute(insert(case_reviews), {"case_id": case_id, "family_id": family_id, **row})


def _allocated(conn: Connection, event: CaseAllocated, _meta: EventMeta) -> None:
    lead = event.lead_professional
    _set_review(
        conn, str(event.case_id), str(event.family_id), lead_name=lead.name, lead_email=lead.email
    )


def _panel(conn: Connection, event: PanelDecisionRecorded, _meta: EventMeta) -> None:
    lead = event.lead_professional
    _set_review(
        conn,
        str(event.case_id),
        str(event.family_id),
        review_date=event.review_date,
        lead_name=lead.name,
        lead_email=lead.email,
    )


def _reviewed(conn: Connection, event: PlanReviewed, _meta: EventMeta) -> None:
    _set_review(conn, str(event.case_id), str(event.family_id), review_date=event.next_review_date)


def _ended(conn: Connection, event: CaseClosed | CaseSteppedUp, _meta: EventMeta) -> None:
    """No more reviews; a case closed for withdrawn consent ends sharing under consent."""
    _set_review(conn, str(event.case_id), str(event.family_id), review_date=None)
    if isinstance(event, CaseClosed) and event.reason is ClosureReason.CONSENT_WITHDRAWN:
        _know_family(conn, str(event.family_id))
        conn.execute(
            update(family_facts)
            .where(family_facts.c.family_id == str(event.family_id))
            .values(consent_withdrawn=True)
        )


def _know_case(conn: Connection, case_id: str, family_id: str) -> None:
    insert_if_absent(conn, known_cases, {"case_id": case_id, "family_id": family_id})


def _stepped_down(conn: Connection, event: CaseSteppedDown, _meta: EventMeta) -> None:
    _know_family(conn, str(event.family_id))
    _know_case(conn, str(event.case_id), str(event.family_id))


_LEARNERS = {
    ReferralReceived: _received,
    ReferralTriaged: _triaged,
    MatchConfirmed: _moved,
    ReferralUnlinked: _moved,
    CaseAllocated: _allocated,
    PanelDecisionRecorded: _panel,
    PlanReviewed: _reviewed,
    CaseClosed: _ended,
    CaseSteppedUp: _ended,
    CaseSteppedDown: _stepped_down,
}

PROJECTIONS = (sharing,)
