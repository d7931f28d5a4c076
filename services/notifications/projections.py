"""Notifications' read models: the event journal and what the sharing policy knows of cases.

The one projection follows every event type: it journals the fields of the event that
some rule of the sharing policy could share (fan-out and replays read the journal;
nothing else of the event is kept) and keeps the facts the policy needs for later
events that do not carry them: who referred, with which consent, which case each
referral opened and when, each case's team, consent, override and children's
schools, and each case's next review.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

from sqlalchemy import Column, Connection, String, Table, insert, or_, select, update

import hub.contracts  # noqa: F401  (registers every event type)
from hub.clock import utc_now
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.base import EventData
from hub.contracts.caseplan import (
    CaseClosed,
    CaseSteppedDown,
    CaseSteppedUp,
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    PlanReviewed,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    TeamMemberAdded,
    TeamMemberRemoved,
)
from hub.contracts.codes import ClosureReason, ConsentScope
from hub.contracts.intake import (
    ConsultationEvent,
    EncompassNoticeAlerted,
    MatchConfirmed,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
)
from hub.contracts.registry import EVENT_TYPES
from hub.observability import current_traceparent
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime, insert_if_absent
from notifications.policy import SharingPolicy, minimise
from notifications.tables import (
    JOURNAL_PROJECTION,
    case_consents,
    case_overrides,
    case_reviews,
    case_schools,
    event_journal,
    family_facts,
    known_cases,
    metadata,
    referral_facts,
    team_members,
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
    JOURNAL_PROJECTION,
    [
        referral_feedback,
        event_journal,
        referral_facts,
        family_facts,
        known_cases,
        case_reviews,
        team_members,
        case_consents,
        case_overrides,
        case_schools,
    ],
)
_INSERT_JOURNAL = insert(event_journal)
# What the journal keeps of an event besides what the policy could share: what fan-out
# needs to find the event's referral and case.
_KEYS = ("referral_id", "case_id")
# What the front door's e-mail about an Operation Encompass alert says: the notice, why,
# its school and deadline; nothing about the child (that stays in the referral).
_FRONT_DOOR_FIELDS = {
    EncompassNoticeAlerted.event_type: ("notice_id", "reason", "school_id", "due_by"),
}
_policy: list[SharingPolicy] = []


def keep_fields_of(policy: SharingPolicy) -> None:
    """Journal only what `policy` could share (the service's app sets it at start)."""
    _policy[:] = [policy]
    _journal_paths.cache_clear()


@cache
def _journal_paths(event_type: str) -> tuple[str, ...]:
    if not _policy:
        from notifications.settings import notifications_settings

        _policy.append(SharingPolicy.load(notifications_settings().policy_file))
    return (
        *_KEYS,
        *_FRONT_DOOR_FIELDS.get(event_type, ()),
        *_policy[0].journal_paths(event_type),
    )


def journalled(event_type: str, event: EventData) -> str:
    """The fields of `event` that some rule could share, as JSON: all the journal keeps."""
    data = event.model_dump(mode="json")
    return json.dumps(minimise(data, _journal_paths(event_type)), separators=(",", ":"))


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
            # When it was consumed: a missing predecessor is waited for from then, for a
            # bounded time (see fanout.py).
            "journalled_at": utc_now(),
            "follows": meta.follows,
            "data": journalled(meta.event_type, event),
            "fanned_out": False,
            "traceparent": traceparent,
            "tracestate": tracestate,
        },
    )
    learn = _LEARNERS.get(type(event))
    if learn is not None:
        learn(conn, event, meta)


# A consultation is the front door's advice to one practitioner, not a referral: no partner
# is told of it by notification (the practitioner reads the advice at intake), and its
# family is the consultation's own, which fan-out would wait for for ever.
for _model in EVENT_TYPES.values():
    if not issubclass(_model, ConsultationEvent):
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
            .values(case_id=str(event.case_id), triaged_at=_meta.occurred_at)
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
    """No more reviews; a case closed for withdrawn consent withdraws the case's consent."""
    _set_review(conn, str(event.case_id), str(event.family_id), meta.occurred_at)
    if isinstance(event, CaseClosed) and event.reason is ClosureReason.CONSENT_WITHDRAWN:
        _set_consent(conn, str(event.case_id), str(event.family_id), (), meta.occurred_at)


def _set_consent(
    conn: Connection, case_id: str, family_id: str, purposes: tuple, at: datetime
) -> None:
    """The case's consent as it stands after an event at `at` (the latest event decides:
    the events of one case come in order on case plan's topic, but a rebuild or a
    redelivery may bring an older one again)."""
    values = {
        "family_id": family_id,
        "purposes": json.dumps(sorted(map(str, purposes))),
        "set_at": at,
    }
    if not insert_if_absent(conn, case_consents, {"case_id": case_id, **values}):
        conn.execute(
            update(case_consents)
            .where(case_consents.c.case_id == case_id, case_consents.c.set_at <= at)
            .values(values)
        )


def _consent_recorded(conn: Connection, event: ConsentRecorded, meta: EventMeta) -> None:
    _set_consent(conn, str(event.case_id), str(event.family_id), event.purposes, meta.occurred_at)


def _consent_narrowed(conn: Connection, event: ConsentNarrowed, meta: EventMeta) -> None:
    _set_consent(conn, str(event.case_id), str(event.family_id), event.purposes, meta.occurred_at)


def _consent_withdrawn(conn: Connection, event: ConsentWithdrawn, meta: EventMeta) -> None:
    _set_consent(conn, str(event.case_id), str(event.family_id), (), meta.occurred_at)


def _set_override(
    conn: Connection, case_id: str, family_id: str, state: str, review_date, at: datetime
) -> None:
    values = {"family_id": family_id, "state": state, "review_date": review_date, "set_at": at}
    if not insert_if_absent(conn, case_overrides, {"case_id": case_id, **values}):
        conn.execute(
            update(case_overrides)
            .where(case_overrides.c.case_id == case_id, case_overrides.c.set_at <= at)
            .values(values)
        )


def _override_recorded(
    conn: Connection, event: SafeguardingOverrideRecorded, meta: EventMeta
) -> None:
    _set_override(
        conn,
        str(event.case_id),
        str(event.family_id),
        "recorded",
        event.review_date,
        meta.occurred_at,
    )


def _override_ended(conn: Connection, event: SafeguardingOverrideEnded, meta: EventMeta) -> None:
    _set_override(conn, str(event.case_id), str(event.family_id), "ended", None, meta.occurred_at)


def _member_added(conn: Connection, event: TeamMemberAdded, meta: EventMeta) -> None:
    case_id = str(event.case_id)
    still = conn.execute(
        select(team_members.c.added_at).where(
            team_members.c.case_id == case_id,
            team_members.c.member_id == event.member_id,
            team_members.c.removed_at.is_(None),
        )
    ).first()
    if still is None:  # added again while a member: the membership goes on
        insert_if_absent(
            conn,
            team_members,
            {
                "case_id": case_id,
                "member_id": event.member_id,
                "added_at": meta.occurred_at,
                "family_id": str(event.family_id),
                "removed_at": None,
            },
        )


def _member_removed(conn: Connection, event: TeamMemberRemoved, meta: EventMeta) -> None:
    conn.execute(
        update(team_members)
        .where(
            team_members.c.case_id == str(event.case_id),
            team_members.c.member_id == event.member_id,
            team_members.c.removed_at.is_(None),
            team_members.c.added_at <= meta.occurred_at,
        )
        .values(removed_at=meta.occurred_at)
    )


def _school_recorded(conn: Connection, event: ChildSchoolRecorded, _meta: EventMeta) -> None:
    insert_if_absent(
        conn,
        case_schools,
        {
            "case_id": str(event.case_id),
            "school_id": event.school_id,
            "family_id": str(event.family_id),
        },
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
    TeamMemberAdded: _member_added,
    TeamMemberRemoved: _member_removed,
    ConsentRecorded: _consent_recorded,
    ConsentNarrowed: _consent_narrowed,
    ConsentWithdrawn: _consent_withdrawn,
    SafeguardingOverrideRecorded: _override_recorded,
    SafeguardingOverrideEnded: _override_ended,
    ChildSchoolRecorded: _school_recorded,
}

PROJECTIONS = (sharing,)
