"""Notifications' read models: the event journal and what the sharing policy knows of families.

The one projection follows every event type: it journals the event (fan-out and replays
read the journal) and keeps the facts the policy needs for later events that do
not carry them: who referred, with which consent, which children's UPNs, which
case each referral opened, and each case's next review.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, String, Table, insert, or_, select, update

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


def _facts_of(conn: Connection, referral_id: str):
    return conn.execute(
        select(referral_facts).where(referral_facts.c.referral_id == referral_id)
    ).first()


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
    facts = {
        "referrer_id": referrer.organisation_id if referrer else None,
        "partner_reference": event.partner_reference,
        "referrer_email": referrer.email if referrer else None,
        "consent_to_share": ConsentScope.SHARE_WITH_PARTNERS in scopes,
        "safeguarding_override": event.safeguarding_override is not None,
        "received": True,
    }
    early = _facts_of(conn, referral_id)
    if early is None:
        conn.execute(
            insert(referral_facts),
            {"referral_id": referral_id, "family_id": family_id, "case_id": None, **facts},
        )
    else:
        # Its triage or a move came first: keep the case they gave, and the family a
        # move gave (the family a triage guessed gives way to the referral's own).
        if early.family_moved_at is None:
            facts["family_id"] = family_id
        conn.execute(
            update(referral_facts).where(referral_facts.c.referral_id == referral_id).values(facts)
        )
    upns = {child.upn for child in event.children if child.upn}
    for upn in sorted(upns):
        conn.execute(insert(referral_pupils), {"referral_id": referral_id, "upn": upn})
    _know_family(conn, family_id)
    if early is not None and early.family_moved_at is not None:
        # A move that came first left its family unknown until now (see `_moved`).
        _know_family(conn, early.family_id)


def _early_facts(conn: Connection, referral_id: str, family_id: str) -> bool:
    """A row for a referral not received yet, to hold what its later events say; True
    when the referral has been received already."""
    facts = _facts_of(conn, referral_id)
    if facts is not None:
        return facts.received
    conn.execute(
        insert(referral_facts),
        {
            "referral_id": referral_id,
            "family_id": family_id,
            "referrer_id": None,
            "partner_reference": None,
            "referrer_email": None,
            "case_id": None,
            "consent_to_share": False,
            "safeguarding_override": False,
            "received": False,
        },
    )
    return False


def _triaged(conn: Connection, event: ReferralTriaged, _meta: EventMeta) -> None:
    if event.case_id is not None:
        _know_case(conn, str(event.case_id), str(event.family_id))
        _early_facts(conn, str(event.referral_id), str(event.family_id))
        conn.execute(
            update(referral_facts)
            .where(referral_facts.c.referral_id == str(event.referral_id))
            .values(case_id=str(event.case_id))
        )


def _moved(conn: Connection, event: MatchConfirmed | ReferralUnlinked, meta: EventMeta) -> None:
    """The referral now belongs to `family_id`; its consent and pupils go with it (unless a
    later move has arrived already: then that one stands)."""
    referral_id, family_id = str(event.referral_id), str(event.family_id)
    received = _early_facts(conn, referral_id, family_id)
    conn.execute(
        update(referral_facts)
        .where(
            referral_facts.c.referral_id == referral_id,
            or_(
                referral_facts.c.family_moved_at.is_(None),
                referral_facts.c.family_moved_at < meta.occurred_at,
            ),
        )
        .values(family_id=family_id, family_moved_at=meta.occurred_at)
    )
    if received:
        # Before the referral is received its new family stays unknown, so that fan-out
        # waits for the referral's facts (who referred, with what consent).
        _know_family(conn, family_id)


def _set_review(
    conn: Connection,
    case_id: str,
    family_id: str,
    at: datetime,
    *,
    review_date: object = None,
    lead: tuple[str, str | None] | None = None,
    sets_review: bool = True,
) -> None:
    """Set the case's next review date and lead professional, each only when the event
    happened after the one that set it last: these come from allocation's and case plan's
    topics, in no particular order."""
    insert_if_absent(
        conn,
        case_reviews,
        {
            "case_id": case_id,
            "family_id": family_id,
            "review_date": None,
            "lead_name": None,
            "lead_email": None,
            "review_set_at": None,
            "lead_set_at": None,
        },
    )
    mine = case_reviews.c.case_id == case_id
    if sets_review:
        conn.execute(
            update(case_reviews)
            .where(
                mine,
                or_(case_reviews.c.review_set_at.is_(None), case_reviews.c.review_set_at < at),
            )
            .values(review_date=review_date, review_set_at=at)
        )
    if lead is not None:
        conn.execute(
            update(case_reviews)
            .where(mine, or_(case_reviews.c.lead_set_at.is_(None), case_reviews.c.lead_set_at < at))
            .values(lead_name=lead[0], lead_email=lead[1], lead_set_at=at)
        )


def _allocated(conn: Connection, event: CaseAllocated, meta: EventMeta) -> None:
    lead = event.lead_professional
    _set_review(
        conn,
        str(event.case_id),
        str(event.family_id),
        meta.occurred_at,
        lead=(lead.name, lead.email),
        sets_review=False,
    )


def _panel(conn: Connection, event: PanelDecisionRecorded, meta: EventMeta) -> None:
    lead = event.lead_professional
    _set_review(
        conn,
        str(event.case_id),
        str(event.family_id),
        meta.occurred_at,
        review_date=event.review_date,
        lead=(lead.name, lead.email),
    )


def _reviewed(conn: Connection, event: PlanReviewed, meta: EventMeta) -> None:
    _set_review(
        conn,
        str(event.case_id),
        str(event.family_id),
        meta.occurred_at,
        review_date=event.next_review_date,
    )


def _ended(conn: Connection, event: CaseClosed | CaseSteppedUp, meta: EventMeta) -> None:
    """No more reviews; a case closed for withdrawn consent ends sharing under consent."""
    _set_review(conn, str(event.case_id), str(event.family_id), meta.occurred_at)
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
