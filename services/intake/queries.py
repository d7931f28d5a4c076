"""The front door's read side: referrals and the triage queue, within the caller's scope.

A partner sees the referrals it made and no other (another partner's referral
is not found, as a missing one); front-door staff see every referral.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, false, select, true

from hub import subject_access
from hub.contracts.codes import Urgency
from hub.contracts.intake import ReferralReceived
from hub.http.pagination import InvalidCursor, after_position, decode_cursor, encode_cursor
from hub.queries import QueryContext
from hub.refusals import Invalid, NotFound
from hub.scope import Scope
from hub.tables import event_store
from intake import domain, encompass
from intake.consultations import ConsultationStatus
from intake.projections import (
    URGENCY_RANK,
    consultations,
    encompass_notices,
    family_cases,
    known_people,
    possible_matches,
    referrals,
)
from intake.schemas import (
    AllocationOutcome,
    ClosureOutcome,
    ConsultationList,
    ConsultationView,
    FrontDoorNotice,
    FrontDoorNoticeQueue,
    LeadProfessional,
    Matching,
    PartnerQueueItem,
    PartnerReferralQueue,
    PartnerReferralView,
    PartnerTriageOutcome,
    PoliceNotification,
    PossibleMatch,
    QueueItem,
    QueueStatus,
    ReferralProgress,
    ReferralQueue,
    ReferralView,
    TriageOutcome,
    WithdrawalOutcome,
)
from intake.settings import IntakeSettings


def referrals_in(scope: Scope) -> ColumnElement[bool]:
    """A partner's own referrals; every referral for staff."""
    if scope.is_staff:
        return true()
    if scope.organisation is None:
        return false()
    return referrals.c.referrer_organisation_id == scope.organisation


def referral(ctx: QueryContext, referral_id: UUID) -> ReferralView | PartnerReferralView:
    """Where the referral is; staff also see its family and possible matches."""
    row = ctx.conn.execute(
        select(referrals).where(
            referrals.c.referral_id == str(referral_id), referrals_in(ctx.scope)
        )
    ).first()
    if row is None:
        raise NotFound(f"No referral {referral_id}.", resource=("referral", str(referral_id)))
    ctx.saw("referral", referral_id)
    if ctx.scope.is_staff:
        return _view_of(row, matching_of(ctx.conn, row))
    return _partner_view_of(row)


def referrer_views(ctx: QueryContext, referral_id: UUID) -> list[PartnerReferralView]:
    """The referral as its referrer sees it, if the caller may see it: none otherwise.

    For searches (FHIR `Task?based-on=`), which answer an empty result, not a refusal,
    for a referral that is not the caller's.
    """
    row = ctx.conn.execute(
        select(referrals).where(
            referrals.c.referral_id == str(referral_id), referrals_in(ctx.scope)
        )
    ).first()
    if row is None:
        return []
    ctx.saw("referral", referral_id)
    return [_partner_view_of(row)]


def referral_queue(
    ctx: QueryContext,
    settings: IntakeSettings,
    status: QueueStatus,
    limit: int,
    cursor: str | None,
) -> ReferralQueue | PartnerReferralQueue:
    """Most urgent first (immediate, urgent, routine), then oldest first, a page at a time."""
    table = referrals
    query = select(
        table.c.referral_id,
        table.c.family_id,
        table.c.status,
        table.c.urgency,
        table.c.urgency_rank,
        table.c.partner_reference,
        table.c.received_at,
        table.c.decided_at,
        table.c.withdrawn_at,
        table.c.allocated_at,
        table.c.case_closed_at,
        table.c.escalated_notices,
        table.c.pending_matches,
    ).where(table.c.status == _STORED_STATUS[status], referrals_in(ctx.scope))
    if cursor is not None:
        rank, received_at, after_id = _decode_cursor(cursor, status)
        query = query.where(
            after_position(
                table.c.urgency_rank,
                table.c.received_at,
                table.c.referral_id,
                rank,
                received_at,
                after_id,
            )
        )
    query = query.order_by(table.c.urgency_rank, table.c.received_at, table.c.referral_id)
    rows = ctx.conn.execute(query.limit(limit + 1)).all()
    page = rows[:limit]
    ctx.saw("referral_list", status.value)
    ctx.listed_ids("referral", *(row.referral_id for row in page))
    last = page[-1] if len(rows) > limit else None
    next_cursor = _encode_cursor(status, last) if last is not None else None
    if not ctx.scope.is_staff:
        return PartnerReferralQueue(
            status=status,
            items=[_partner_queue_item(row, settings, ctx.now) for row in page],
            next_cursor=next_cursor,
        )
    return ReferralQueue(
        status=status,
        items=[
            QueueItem(
                **_partner_queue_item(row, settings, ctx.now).model_dump(),
                family_id=row.family_id,
                unresolved_matches=row.pending_matches,
            )
            for row in page
        ],
        next_cursor=next_cursor,
    )


def matching_recorded_of(conn: Connection, referral_id: UUID) -> tuple[str, Matching]:
    """The referral's family and matching, just after a matching decision."""
    row = conn.execute(select(referrals).where(referrals.c.referral_id == str(referral_id))).one()
    return row.family_id, matching_of(conn, row)


# The read model keeps the referral's own status; the queue's name for "received" differs.
_STORED_STATUS = {
    QueueStatus.AWAITING_TRIAGE: domain.ReferralStatus.RECEIVED.value,
    QueueStatus.HELD_FOR_INFORMATION: domain.ReferralStatus.HELD.value,
    QueueStatus.TRIAGED: domain.ReferralStatus.TRIAGED.value,
    QueueStatus.WITHDRAWN: domain.ReferralStatus.WITHDRAWN.value,
}


def _progress(row: Any) -> ReferralProgress:
    if row.status == domain.ReferralStatus.TRIAGED and row.case_closed_at is not None:
        return ReferralProgress.CLOSED
    if row.status == domain.ReferralStatus.TRIAGED and row.allocated_at is not None:
        return ReferralProgress.ALLOCATED
    return ReferralProgress(row.status)


def _partner_queue_item(row: Any, settings: IntakeSettings, now: datetime) -> PartnerQueueItem:
    deadline = row.received_at + settings.decision_deadline(Urgency(row.urgency))
    # Still awaiting a decision: overdue once the deadline is past; otherwise,
    # whether the decision (or the withdrawal) came after it. A notification held
    # for information awaits nothing.
    held = row.status == domain.ReferralStatus.HELD and row.decided_at is None
    ended = row.decided_at or row.withdrawn_at or (deadline if held else now)
    return PartnerQueueItem(
        referral_id=row.referral_id,
        status=_progress(row),
        urgency=row.urgency,
        partner_reference=row.partner_reference,
        received_at=row.received_at,
        age_seconds=max(0, int((now - row.received_at).total_seconds())),
        decision_deadline=deadline,
        overdue=ended > deadline,
        escalating_concern=row.escalated_notices > 0,
    )


def _encode_cursor(status: QueueStatus, row: Any) -> str:
    return encode_cursor(status.value, row.urgency_rank, row.received_at, row.referral_id)


def _decode_cursor(cursor: str, status: QueueStatus) -> tuple[int, datetime, str]:
    invalid = Invalid.field(
        "query.cursor", "not a valid cursor", "cursor", "The cursor is not one this API gave out."
    )
    try:
        listed, rank, received, after_id = decode_cursor(cursor)
    except InvalidCursor as exc:
        raise invalid from exc
    if rank not in URGENCY_RANK.values():
        raise invalid
    if listed != status.value:
        raise Invalid.field(
            "query.cursor",
            "this cursor continues another status's list",
            "cursor_mismatch",
            "The cursor belongs to another status.",
        )
    return rank, received, after_id


def matching_of(conn: Any, row: Any) -> Matching:
    found = conn.execute(
        select(possible_matches)
        .where(possible_matches.c.referral_id == row.referral_id)
        .order_by(possible_matches.c.found_at, possible_matches.c.match_id)
    )
    return Matching(
        matched_existing_family=row.matched_existing_family,
        re_referral_of_case_id=row.re_referral_of_case_id,
        possible_matches=[
            PossibleMatch(
                match_id=match.match_id,
                person_id=match.person_id,
                candidate_person_id=match.candidate_person_id,
                candidate_family_id=match.candidate_family_id,
                agrees_on=[f for f in match.agrees_on.split(",") if f],
                differs_on=[f for f in match.differs_on.split(",") if f],
                status=match.status,
                decided_by=match.decided_by,
                decided_at=match.decided_at,
                reason=match.reason,
            )
            for match in found
        ],
    )


def _view_of(row: Any, matching: Matching) -> ReferralView:
    """Staff's view: the referrer's, with the family, the matching and the open case."""
    partner = _partner_view_of(row)
    triage = (
        TriageOutcome(**partner.triage.model_dump(), joins_open_case=row.joins_open_case)
        if partner.triage is not None
        else None
    )
    return ReferralView(
        **partner.model_dump(exclude={"triage"}),
        family_id=row.family_id,
        matching=matching,
        triage=triage,
    )


def _partner_view_of(row: Any) -> PartnerReferralView:
    triage = (
        PartnerTriageOutcome(
            level_of_need=row.level_of_need,
            route=row.route,
            locality=row.locality,
            case_id=row.case_id,
            decided_at=row.decided_at,
        )
        if row.decided_at is not None
        else None
    )
    allocation = (
        AllocationOutcome(
            allocated_at=row.allocated_at,
            lead_professional=LeadProfessional(
                name=row.lead_professional_name,
                role=row.lead_professional_role,
                team=row.lead_professional_team,
                email=row.lead_professional_email,
                phone=row.lead_professional_phone,
            ),
        )
        if row.allocated_at is not None
        else None
    )
    withdrawal = (
        WithdrawalOutcome(withdrawn_at=row.withdrawn_at, reason=row.withdrawal_reason)
        if row.withdrawn_at is not None
        else None
    )
    closure = (
        ClosureOutcome(closed_at=row.case_closed_at, reason=row.closure_reason)
        if row.case_closed_at is not None
        else None
    )
    return PartnerReferralView(
        referral_id=row.referral_id,
        status=_progress(row),
        received_at=row.received_at,
        urgency=row.urgency,
        referral_source=row.referral_source,
        partner_reference=row.partner_reference,
        police_notification=(
            PoliceNotification(
                grade=row.police_grade,
                escalated_in=row.escalated_in,
                escalates_notices=row.escalated_notices,
            )
            if row.police_grade is not None
            else None
        ),
        triage=triage,
        allocation=allocation,
        closure=closure,
        withdrawal=withdrawal,
    )


# --- subject access -----------------------------------------------------------------


def family_records(ctx: QueryContext, family_id: UUID) -> subject_access.FamilyRecords:
    """Everything the front door holds about the family: its referrals (the referral as
    received is in the events), the people matched, the possible matches and the cases."""
    subject_access.check_allowed(ctx.scope)
    family = str(family_id)
    of_family = select(referrals.c.referral_id).where(referrals.c.family_id == family)
    conn = ctx.conn
    sections = [
        subject_access.section(
            conn,
            "referrals",
            "Referrals",
            select(referrals)
            .where(referrals.c.family_id == family)
            .order_by(referrals.c.received_at),
            "Each referral about the family and where it is now.",
            # The queue's sort key says nothing about the family.
            leave_out=("urgency_rank",),
        ),
        subject_access.section(
            conn,
            "people",
            "Children as the front door recorded them",
            select(known_people)
            .where(known_people.c.family_id == family)
            .order_by(known_people.c.person_id, known_people.c.record_id),
            "One row per referral a child was in: what matching compares.",
        ),
        subject_access.section(
            conn,
            "possible_matches",
            "Possible matches to people the hub knew",
            select(possible_matches)
            .where(possible_matches.c.referral_id.in_(of_family))
            .order_by(possible_matches.c.found_at),
        ),
        subject_access.section(
            conn,
            "cases",
            "Early help cases",
            select(family_cases)
            .where(family_cases.c.family_id == family)
            .order_by(family_cases.c.opened_at),
        ),
        subject_access.section(
            conn,
            "encompass_notices",
            "Operation Encompass notices to children's schools",
            select(encompass_notices)
            .where(encompass_notices.c.referral_id.in_(of_family))
            .order_by(encompass_notices.c.issued_at, encompass_notices.c.notice_id),
            "Each police notification's notice to a child's school: the child's details as"
            " the school was told them are in the notice's events.",
        ),
    ]
    streams = [domain.stream_id(UUID(row["referral_id"])) for row in sections[0].rows] + [
        encompass.stream_id(UUID(row["notice_id"])) for row in sections[-1].rows
    ]
    ctx.saw(subject_access.RESOURCE_TYPE, family_id)
    return subject_access.records(ctx.conn, "intake", family_id, sections, stream_ids=streams)


def people_named(
    ctx: QueryContext, person_id: UUID | None, nhs_number: str | None
) -> list[subject_access.PersonFound]:
    """The people a subject access request names, and each one's family now: children by
    their records (person id or NHS number), household members by the referrals naming them."""
    subject_access.check_allowed(ctx.scope)
    people = known_people.c
    found: dict[tuple[str, str], subject_access.PersonFound] = {}
    if person_id is not None:
        condition = people.person_id == str(person_id)
    else:
        condition = people.nhs_number == nhs_number
    rows = ctx.conn.execute(
        select(people.person_id, people.family_id, people.given_name, people.family_name,
               people.date_of_birth, people.nhs_number)
        .where(condition)
        .order_by(people.person_id, people.record_id)
    )  # fmt: skip
    for row in rows:
        found.setdefault(
            (row.person_id, row.family_id),
            subject_access.PersonFound(
                person_id=row.person_id,
                family_id=row.family_id,
                kind="child",
                given_name=row.given_name,
                family_name=row.family_name,
                date_of_birth=row.date_of_birth,
                nhs_number=row.nhs_number,
            ),
        )
    if person_id is not None and not found:
        found.update(_household_member(ctx.conn, person_id))
    if not found:
        asked = str(person_id) if person_id is not None else "nhs_number"  # never the number
        raise NotFound("The hub holds no record of this person.", resource=("person", asked))
    for person in found.values():
        ctx.saw("person", person.person_id)
    return list(found.values())


def _household_member(
    conn: Connection, person_id: UUID
) -> dict[tuple[str, str], subject_access.PersonFound]:
    """A parent or carer: only the referrals that named them hold their person id."""
    named = conn.execute(
        select(event_store.c.data, referrals.c.family_id)
        .join(referrals, referrals.c.referral_id == event_store.c.subject)
        .where(
            event_store.c.event_type == ReferralReceived.event_type,
            event_store.c.data.contains(str(person_id)),
        )
        .order_by(event_store.c.position)
    )
    found: dict[tuple[str, str], subject_access.PersonFound] = {}
    for data, family_id in named:
        for member in json.loads(data).get("household_members", []):
            if member.get("person_id") == str(person_id):
                found[(str(person_id), family_id)] = subject_access.PersonFound(
                    person_id=person_id,
                    family_id=family_id,
                    kind="household_member",
                    given_name=member["given_name"],
                    family_name=member["family_name"],
                    date_of_birth=member.get("date_of_birth"),
                )
    return found


# --- consultations (issue 21) -------------------------------------------------------------


def consultations_in(scope: Scope) -> ColumnElement[bool]:
    """A partner's own consultations; every one for staff (the front door: only it reads
    referrals among staff)."""
    if scope.is_staff:
        return true()
    if scope.organisation is None:
        return false()
    return consultations.c.organisation_id == scope.organisation


def consultation_view(conn: Connection, scope: Scope, consultation_id: UUID) -> ConsultationView:
    row = conn.execute(
        select(consultations).where(
            consultations.c.consultation_id == str(consultation_id), consultations_in(scope)
        )
    ).first()
    if row is None:
        raise NotFound(
            f"No consultation {consultation_id}.",
            resource=("consultation", str(consultation_id)),
        )
    return _consultation_of(row, scope)


def _consultation_of(row: Any, scope: Scope) -> ConsultationView:
    request = json.loads(row.request)
    return ConsultationView(
        consultation_id=row.consultation_id,
        status=row.status,
        requested_at=row.requested_at,
        organisation_id=row.organisation_id,
        practitioner=request["practitioner"],
        factors=request["factors"],
        question=request["question"],
        anonymous=row.anonymous,
        children=request["children"],
        outcome=row.outcome,
        advice=row.advice,
        advised_at=row.advised_at,
        advised_by=row.advised_by if scope.is_staff else None,
        referral_id=row.referral_id,
        referred_at=row.referred_at,
    )


def consultation(ctx: QueryContext, consultation_id: UUID) -> ConsultationView:
    """The consultation and the advice given; a partner sees its own only."""
    view = consultation_view(ctx.conn, ctx.scope, consultation_id)
    ctx.saw("consultation", consultation_id)
    return view


def consultation_list(
    ctx: QueryContext, status: ConsultationStatus, limit: int
) -> ConsultationList:
    """The front door's consultations by status, oldest first."""
    rows = ctx.conn.execute(
        select(consultations)
        .where(consultations.c.status == status.value, consultations_in(ctx.scope))
        .order_by(consultations.c.requested_at, consultations.c.consultation_id)
        .limit(limit)
    ).all()
    ctx.saw("consultation_list", status.value)
    ctx.listed_ids("consultation", *(row.consultation_id for row in rows))
    return ConsultationList(items=[_consultation_of(row, ctx.scope) for row in rows])


# --- Operation Encompass --------------------------------------------------------------

ENCOMPASS_QUEUE_LIMIT = 500


def encompass_queue(ctx: QueryContext) -> FrontDoorNoticeQueue:
    """Notices the front door was alerted about and no school has acknowledged, the
    soonest due first: a child with no known school, or a school silent near the deadline."""
    notices = encompass_notices.c
    rows = ctx.conn.execute(
        select(encompass_notices)
        .where(notices.acknowledged_at.is_(None), notices.alert_reason.is_not(None))
        .order_by(notices.due_by, notices.notice_id)
        .limit(ENCOMPASS_QUEUE_LIMIT)
    ).all()
    ctx.listed_ids("encompass_notice", *(row.notice_id for row in rows))
    return FrontDoorNoticeQueue(
        notices=[
            FrontDoorNotice(
                notice_id=row.notice_id,
                referral_id=row.referral_id,
                school_id=row.school_id,
                school_urn=row.school_urn,
                issued_at=row.issued_at,
                due_by=row.due_by,
                alert_reason=row.alert_reason,
                alerted_at=row.alerted_at,
            )
            for row in rows
        ]
    )
