"""Intake's read models: fed by its own events in the transaction that stores them,
by allocation's `CaseAllocated` (who the family's lead professional is) and by case
plan's step-downs and closures (which families have open or recent cases) and the
schools staff record for children (where an Operation Encompass notice goes), from Kafka.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Update,
    insert,
    update,
)

from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import CaseClosed, CaseSteppedDown, ChildSchoolRecorded
from hub.contracts.codes import Urgency
from hub.contracts.intake import (
    ConsultationAdvised,
    ConsultationReferred,
    ConsultationRequested,
    EncompassNoticeAcknowledged,
    EncompassNoticeAlerted,
    EncompassNoticeIssued,
    MatchConfirmed,
    MatchRejected,
    PossibleMatchFound,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
    ReferralWithdrawn,
)
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime, insert_if_absent
from intake.matching import normalise_name, normalise_postcode

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
    # 0004: matching and cumulative concern.
    Column("matched_existing_family", Boolean, nullable=False, default=False),
    Column("re_referral_of_case_id", String(36), nullable=True),
    Column("pending_matches", Integer, nullable=False, default=0),
    Column("police_grade", String(10), nullable=True),
    Column("escalated_notices", Integer, nullable=False, default=0),
    Column("escalated_in", String(36), nullable=True),
    Column("joins_open_case", Boolean, nullable=False, default=False),
    # 0005: the closure of the case the referral went to (FHIR Task, issue 20).
    Column("case_closed_at", UtcDateTime(), nullable=True),
    Column("closure_reason", String(30), nullable=True),
)
Index(
    "ix_referrals_queue",
    referrals.c.status,
    referrals.c.urgency_rank,
    referrals.c.received_at,
    referrals.c.referral_id,
)

Index(
    "ix_referrals_held_notices",
    referrals.c.family_id,
    referrals.c.status,
    referrals.c.police_grade,
    referrals.c.received_at,
)

# Possible matches, for staff to confirm or reject; decided ones stay as a record.
possible_matches = Table(
    "possible_matches",
    metadata,
    Column("match_id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False, index=True),
    Column("person_id", String(36), nullable=False),
    Column("candidate_person_id", String(36), nullable=False),
    Column("candidate_family_id", String(36), nullable=False),
    Column("agrees_on", String(200), nullable=False),
    Column("differs_on", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("found_at", UtcDateTime(), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("reason", Text, nullable=True),
)

referral_status = Projection("referral_status", [referrals, possible_matches])
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
            "status": "held_for_information" if event.held_for_information else "received",
            "matched_existing_family": event.matched_existing_family,
            "re_referral_of_case_id": _str_or_none(event.re_referral_of_case_id),
            "pending_matches": 0,
            "joins_open_case": False,
            "police_grade": event.police_grade.value if event.police_grade else None,
            "escalated_notices": len(event.escalates_notices),
        },
    )
    if event.escalates_notices:
        conn.execute(
            update(referrals)
            .where(referrals.c.referral_id.in_([str(r) for r in event.escalates_notices]))
            .values(escalated_in=str(event.referral_id), updated_at=meta.occurred_at)
        )


@referral_status.on(PossibleMatchFound)
def _possible_match(conn, event: PossibleMatchFound, meta: EventMeta) -> None:
    conn.execute(
        insert(possible_matches),
        {
            "match_id": str(event.match_id),
            "referral_id": str(event.referral_id),
            "person_id": str(event.person_id),
            "candidate_person_id": str(event.candidate_person_id),
            "candidate_family_id": str(event.candidate_family_id),
            "agrees_on": ",".join(event.agrees_on),
            "differs_on": ",".join(event.differs_on),
            "status": "pending",
            "found_at": meta.occurred_at,
        },
    )
    conn.execute(
        _update(str(event.referral_id)).values(pending_matches=referrals.c.pending_matches + 1)
    )


def _match_decided(conn, match_id: str, referral_id: str, **values) -> None:
    conn.execute(
        update(possible_matches).where(possible_matches.c.match_id == match_id).values(**values)
    )
    conn.execute(_update(referral_id).values(pending_matches=referrals.c.pending_matches - 1))


@referral_status.on(MatchConfirmed)
def _match_confirmed(conn, event: MatchConfirmed, meta: EventMeta) -> None:
    _match_decided(
        conn,
        str(event.match_id),
        str(event.referral_id),
        status="confirmed",
        decided_by=event.confirmed_by,
        decided_at=event.confirmed_at,
    )
    conn.execute(
        _update(str(event.referral_id)).values(
            family_id=str(event.family_id),
            matched_existing_family=True,
            re_referral_of_case_id=_str_or_none(event.re_referral_of_case_id),
            updated_at=meta.occurred_at,
        )
    )


@referral_status.on(MatchRejected)
def _match_rejected(conn, event: MatchRejected, meta: EventMeta) -> None:
    _match_decided(
        conn,
        str(event.match_id),
        str(event.referral_id),
        status="rejected",
        decided_by=event.rejected_by,
        decided_at=event.rejected_at,
        reason=event.reason,
    )


@referral_status.on(ReferralUnlinked)
def _unlinked(conn, event: ReferralUnlinked, meta: EventMeta) -> None:
    conn.execute(
        _update(str(event.referral_id)).values(
            family_id=str(event.family_id),
            matched_existing_family=False,
            re_referral_of_case_id=None,
            updated_at=meta.occurred_at,
        )
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
            joins_open_case=event.joins_open_case,
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


@referral_status.on(CaseClosed)
def _closed(conn, event: CaseClosed, meta: EventMeta) -> None:
    """The case a referral opened or joined has closed: its referrer is told when and
    the reason's code (the sharing policy's referrer rule), never the free text."""
    conn.execute(
        update(referrals)
        .where(referrals.c.case_id == str(event.case_id))
        .values(
            case_closed_at=event.closed_at,
            closure_reason=event.reason.value,
            updated_at=meta.occurred_at,
        )
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


# --- what a new referral is matched against -----------------------------------------

# Every child the front door has recorded, one row per referral (or step-down) they
# were in: an earlier referral may hold an address or a UPN a later one lacks.
known_people = Table(
    "known_people",
    metadata,
    Column("record_id", String(36), primary_key=True),
    Column("person_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("given_name", String(100), nullable=False),
    Column("family_name", String(100), nullable=False),
    Column("date_of_birth", Date, nullable=True),
    Column("postcode", String(8), nullable=False),
    Column("nhs_number", String(10), nullable=True, index=True),
    Column("upn", String(13), nullable=True, index=True),
)
Index("ix_known_people_born", known_people.c.family_name, known_people.c.date_of_birth)

# Each family's early help cases: opened by triage or by a step-down, closed by case plan.
family_cases = Table(
    "family_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("closed_at", UtcDateTime(), nullable=True),
)

front_door_records = Projection("front_door_records", [known_people, family_cases])


@front_door_records.on(ReferralReceived)
def _people_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    conn.execute(
        insert(known_people),
        [
            {
                "record_id": str(event.referral_id),
                "person_id": str(child.person_id),
                "family_id": str(event.family_id),
                "given_name": normalise_name(child.given_name),
                "family_name": normalise_name(child.family_name),
                "date_of_birth": child.date_of_birth,
                "postcode": normalise_postcode(child.address.postcode),
                "nhs_number": child.nhs_number,
                "upn": child.upn,
            }
            for child in event.children
        ],
    )


@front_door_records.on(MatchConfirmed)
def _people_matched(conn, event: MatchConfirmed, meta: EventMeta) -> None:
    record = known_people.c.record_id == str(event.referral_id)
    conn.execute(
        update(known_people)
        .where(record, known_people.c.person_id == str(event.person_id))
        .values(person_id=str(event.matched_person_id))
    )
    conn.execute(update(known_people).where(record).values(family_id=str(event.family_id)))


@front_door_records.on(ReferralUnlinked)
def _people_unlinked(conn, event: ReferralUnlinked, meta: EventMeta) -> None:
    record = known_people.c.record_id == str(event.referral_id)
    for person in event.people:
        conn.execute(
            update(known_people)
            .where(record, known_people.c.person_id == str(person.previous_person_id))
            .values(person_id=str(person.person_id))
        )
    conn.execute(update(known_people).where(record).values(family_id=str(event.family_id)))


@front_door_records.on(ReferralTriaged)
def _case_opened(conn, event: ReferralTriaged, meta: EventMeta) -> None:
    if event.case_id is None or event.joins_open_case:
        return
    conn.execute(
        insert(family_cases),
        {
            "case_id": str(event.case_id),
            "family_id": str(event.family_id),
            "opened_at": event.decided_at,
        },
    )


@front_door_records.on(CaseSteppedDown)
def _stepped_down(conn, event: CaseSteppedDown, meta: EventMeta) -> None:
    """A family social care stepped down is known to the front door from then on."""
    conn.execute(
        insert(family_cases),
        {
            "case_id": str(event.case_id),
            "family_id": str(event.family_id),
            "opened_at": event.stepped_down_at,
        },
    )
    conn.execute(
        insert(known_people),
        [
            {
                "record_id": str(event.case_id),
                "person_id": str(child.person_id),
                "family_id": str(event.family_id),
                "given_name": normalise_name(child.given_name),
                "family_name": normalise_name(child.family_name),
                "date_of_birth": child.date_of_birth,
                "postcode": normalise_postcode(child.postcode),
                "nhs_number": child.nhs_number,
                "upn": None,
            }
            for child in event.children
        ],
    )


@front_door_records.on(CaseClosed)
def _case_closed(conn, event: CaseClosed, meta: EventMeta) -> None:
    conn.execute(
        update(family_cases)
        .where(family_cases.c.case_id == str(event.case_id))
        .values(closed_at=event.closed_at)
    )


# --- consultations (issue 21) ------------------------------------------------------------

# Each consultation as the front door and the practitioner who asked see it. `request` is
# the request as JSON (who asked, about what, the children when named).
consultations = Table(
    "consultations",
    metadata,
    Column("consultation_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("organisation_id", String(100), nullable=True, index=True),
    Column("status", String(30), nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("request", Text, nullable=False),
    Column("outcome", String(30), nullable=True),
    Column("advice", Text, nullable=True),
    Column("advised_at", UtcDateTime(), nullable=True),
    Column("advised_by", String(200), nullable=True),
    Column("referral_id", String(36), nullable=True),
    Column("referred_at", UtcDateTime(), nullable=True),
)
Index("ix_consultations_queue", consultations.c.status, consultations.c.requested_at)

consultation_register = Projection("consultations", [consultations])


def _consultation(consultation_id) -> Update:
    return update(consultations).where(consultations.c.consultation_id == str(consultation_id))


@consultation_register.on(ConsultationRequested)
def _consultation_requested(conn, event: ConsultationRequested, meta: EventMeta) -> None:
    conn.execute(
        insert(consultations),
        {
            "consultation_id": str(event.consultation_id),
            "family_id": str(event.family_id),
            "organisation_id": event.practitioner.organisation_id,
            "status": "awaiting_advice",
            "requested_at": event.requested_at,
            "anonymous": event.anonymous,
            "request": event.model_dump_json(
                include={"practitioner", "factors", "question", "children"}
            ),
        },
    )


@consultation_register.on(ConsultationAdvised)
def _consultation_advised(conn, event: ConsultationAdvised, meta: EventMeta) -> None:
    conn.execute(
        _consultation(event.consultation_id).values(
            status="advised",
            outcome=event.outcome.value,
            advice=event.advice,
            advised_at=event.advised_at,
            advised_by=event.advised_by,
        )
    )


@consultation_register.on(ConsultationReferred)
def _consultation_referred(conn, event: ConsultationReferred, meta: EventMeta) -> None:
    conn.execute(
        _consultation(event.consultation_id).values(
            status="referred", referral_id=str(event.referral_id), referred_at=event.referred_at
        )
    )


# --- Operation Encompass --------------------------------------------------------------

# Each notice's school, deadline and state: the deadline watch, the front door's
# queue and the measures read it. Nothing about the child: that stays in the events.
encompass_notices = Table(
    "encompass_notices",
    metadata,
    Column("notice_id", String(36), primary_key=True),
    # The family is the referral's (a match may move it): found through the referral.
    Column("referral_id", String(36), nullable=False, index=True),
    Column("police_force", String(64), nullable=False),
    Column("school_id", String(64), nullable=True, index=True),
    Column("school_urn", String(6), nullable=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("due_by", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("acknowledged_in_time", Boolean, nullable=True),
    # The latest alert to the front door and why (no_school, unacknowledged).
    Column("alerted_at", UtcDateTime(), nullable=True),
    Column("alert_reason", String(20), nullable=True),
)
Index(
    "ix_encompass_notices_watch",
    encompass_notices.c.acknowledged_at,
    encompass_notices.c.alert_reason,
    encompass_notices.c.due_by,
)

# The school staff recorded for each child on a case (case plan's ChildSchoolRecorded):
# where a later notice about the child goes when police name no school.
child_schools = Table(
    "child_schools",
    metadata,
    Column("person_id", String(36), primary_key=True),
    Column("school_id", String(64), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
)

encompass = Projection("encompass", [encompass_notices, child_schools])


@encompass.on(EncompassNoticeIssued)
def _notice_issued(conn, event: EncompassNoticeIssued, meta: EventMeta) -> None:
    conn.execute(
        insert(encompass_notices),
        {
            "notice_id": str(event.notice_id),
            "referral_id": str(event.referral_id),
            "police_force": event.police_force,
            "school_id": event.school_id,
            "school_urn": event.school_urn,
            "issued_at": event.issued_at,
            "due_by": event.due_by,
        },
    )


def _notice(notice_id: object):
    return update(encompass_notices).where(encompass_notices.c.notice_id == str(notice_id))


@encompass.on(EncompassNoticeAcknowledged)
def _notice_acknowledged(conn, event: EncompassNoticeAcknowledged, meta: EventMeta) -> None:
    conn.execute(
        _notice(event.notice_id).values(
            acknowledged_at=event.acknowledged_at, acknowledged_in_time=event.in_time
        )
    )


@encompass.on(EncompassNoticeAlerted)
def _notice_alerted(conn, event: EncompassNoticeAlerted, meta: EventMeta) -> None:
    conn.execute(
        _notice(event.notice_id).values(alerted_at=event.alerted_at, alert_reason=event.reason)
    )


@encompass.on(ChildSchoolRecorded)
def _child_school(conn, event: ChildSchoolRecorded, meta: EventMeta) -> None:
    """The latest school recorded for the child wins: children move schools."""
    person = str(event.person_id)
    updated = conn.execute(
        update(child_schools)
        .where(
            child_schools.c.person_id == person, child_schools.c.recorded_at <= event.recorded_at
        )
        .values(school_id=event.school_id, recorded_at=event.recorded_at)
    )
    if updated.rowcount == 0:
        insert_if_absent(
            conn,
            child_schools,
            {"person_id": person, "school_id": event.school_id, "recorded_at": event.recorded_at},
        )


PROJECTIONS = (referral_status, front_door_records, consultation_register, encompass)
