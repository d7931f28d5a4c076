"""Case plan's read side: the SQL and the views, each limited to the caller's scope.

Staff see the cases of their localities and teams and those they lead; they
work (change) those they lead, their team's, and as managers their localities'.
A family's chronology is in scope when one of its cases or referrals is. A
record outside the scope is not found, exactly as a missing one.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import statistics
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ColumnElement, Connection, and_, exists, false, func, or_, select, true

from caseplan import claims, domain, retention, returns
from caseplan.projections import (
    assessment_drafts,
    case_inputs,
    case_reviews,
    cases,
    chronology_entries,
    encompass_notices,
    family_involvement,
    family_referrals,
    front_door_consultations,
    standing_consent_of,
)
from caseplan.schemas import (
    AssessmentDraftView,
    AssessmentSubmission,
    CaseFilter,
    CaseList,
    CaseSummary,
    CaseView,
    ChildSchoolView,
    Chronology,
    ChronologyEntry,
    ConsentView,
    ConsultationCounts,
    EncompassMeasures,
    EncompassSchoolMeasures,
    FamilyFallingDue,
    HeldFamily,
    InvolvedParty,
    LeadProfessional,
    LegalHoldView,
    OutsideFourWeeks,
    OutsideFourWeeksList,
    OverrideView,
    PerformanceReport,
    RetentionDue,
    ServiceStartTime,
    StageTime,
    TeamMemberView,
)
from hub import subject_access
from hub.auth import Identities
from hub.commands import etag
from hub.contracts.caseplan import CaseSteppedDown, IdentifiedNeed, TeamMemberKind
from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.common import Consent
from hub.contracts.dates import authority_date
from hub.contracts.registry import event_model
from hub.queries import QueryContext
from hub.refusals import Forbidden, Invalid, NotFound
from hub.retention import RetentionSchedule
from hub.scope import Scope
from hub.store import EventStore

MANAGER_ROLE = "team_manager"

# --- scope, in SQL --------------------------------------------------------------------


def led_by(scope: Scope) -> ColumnElement[bool]:
    """The cases the caller leads: allocation names the worker's staff client id when the
    registry links one; otherwise a staff client may be named by the e-mail."""
    return or_(
        cases.c.lead_staff_client_id == scope.subject,
        and_(
            cases.c.lead_staff_client_id.is_(None),
            func.lower(cases.c.lead_email) == scope.subject.lower(),
        ),
    )


def visible(scope: Scope) -> ColumnElement[bool]:
    """The cases the caller may see."""
    if not scope.is_staff:
        return false()
    if scope.authority_wide:
        return true()
    return or_(
        cases.c.locality.in_(scope.localities), cases.c.team_id.in_(scope.teams), led_by(scope)
    )


def workable(scope: Scope) -> ColumnElement[bool]:
    """The cases the caller may change: led, their team's, or (managers) their localities'."""
    if not scope.is_staff:
        return false()
    if scope.authority_wide:
        return true()
    managed = cases.c.locality.in_(scope.localities) if scope.has_role(MANAGER_ROLE) else false()
    return or_(led_by(scope), cases.c.team_id.in_(scope.teams), managed)


def leads_or_manages(scope: Scope) -> ColumnElement[bool]:
    """The cases whose team around the family and safeguarding override the caller may
    change: those they lead, and (managers) those of their localities, or every case for a
    manager across the authority."""
    if not scope.is_staff:
        return false()
    if not scope.has_role(MANAGER_ROLE):
        return led_by(scope)
    if scope.authority_wide:
        return true()
    return or_(led_by(scope), cases.c.locality.in_(scope.localities))


def family_visible(scope: Scope, family_id: UUID) -> ColumnElement[bool]:
    """A family is in scope when one of its cases, or one of its referrals' localities, is."""
    if not scope.is_staff:
        return false()
    if scope.authority_wide:
        return true()
    return or_(
        exists().where(cases.c.family_id == str(family_id), visible(scope)),
        exists().where(
            family_referrals.c.family_id == str(family_id),
            family_referrals.c.locality.in_(scope.localities),
        ),
    )


def no_case(case_id: UUID) -> NotFound:
    return NotFound(f"No case {case_id}.", resource=("case", str(case_id)))


def workable_case(conn: Connection, scope: Scope, case_id: UUID) -> Any:
    """The case's row when the caller may work it; a missing row never passes.

    A case the caller may see but not work is a 403 (they know it exists); one
    they may not see is a 404, as a missing one.
    """
    row = conn.execute(
        select(
            cases.c.case_id, cases.c.team_id, cases.c.locality, workable(scope).label("ok")
        ).where(cases.c.case_id == str(case_id), visible(scope))
    ).first()
    if row is None:
        raise no_case(case_id)
    if not row.ok:
        raise Forbidden(
            f"Case {case_id} is worked by its lead professional, their team "
            f"({row.team_id}) and the managers of {row.locality}.",
            resource=("case", str(case_id)),
        )
    return row


def managed_case(conn: Connection, scope: Scope, case_id: UUID) -> Any:
    """The case's row when the caller leads or manages it; 403 when they only see it."""
    row = conn.execute(
        select(cases.c.case_id, cases.c.locality, leads_or_manages(scope).label("ok")).where(
            cases.c.case_id == str(case_id), visible(scope)
        )
    ).first()
    if row is None:
        raise no_case(case_id)
    if not row.ok:
        raise Forbidden(
            f"The team and safeguarding overrides of case {case_id} are changed by its lead "
            f"professional and the managers of {row.locality}.",
            resource=("case", str(case_id)),
        )
    return row


# --- what decisions on the team, consent and schools need to know ---------------------


def partner_type(directory: Identities, client_id: str) -> str | None:
    """The organisation type of a partner of the hub; None for anyone else."""
    client = directory.client(client_id)
    if client is None or client.kind != "partner" or client.organisation_type is None:
        return None
    return client.organisation_type.value


def member_kind(conn: Connection, directory: Identities, member_id: str) -> TeamMemberKind | None:
    """A partner in the identities file, or a provider case plan knows from the packages
    panels agreed (allocation's registry reaches case plan only through them)."""
    if partner_type(directory, member_id) is not None:
        return TeamMemberKind.PARTNER
    known = conn.execute(
        select(family_involvement.c.party_id)
        .where(family_involvement.c.kind == "provider", family_involvement.c.party_id == member_id)
        .limit(1)
    ).first()
    return TeamMemberKind.PROVIDER if known is not None else None


def is_school(directory: Identities, client_id: str) -> bool:
    return partner_type(directory, client_id) == PartnerOrganisationType.SCHOOL.value


def children_of_family(conn: Connection, family_id: UUID, case_id: UUID) -> frozenset[UUID]:
    """The children the family's referrals named, and those social care stepped down."""
    children: set[UUID] = set()
    for (listed,) in conn.execute(
        select(family_referrals.c.children).where(family_referrals.c.family_id == str(family_id))
    ):
        children.update(UUID(child["person_id"]) for child in json.loads(listed))
    for (data,) in conn.execute(
        select(case_inputs.c.data_json).where(
            case_inputs.c.case_id == str(case_id),
            case_inputs.c.event_type == CaseSteppedDown.event_type,
        )
    ):
        children.update(
            child.person_id for child in CaseSteppedDown.model_validate_json(data).children
        )
    return frozenset(children)


def opening_referral(
    conn: Connection, case_id: UUID, opened_at: datetime | None
) -> tuple[str, domain.StandingConsent | None] | None:
    """The referral whose triage opened the case's current episode (the latest that did not
    join an open case, triaged by the time the episode opened) and the consent it carried."""
    referral = family_referrals.c
    query = select(referral.referral_id, referral.consent).where(
        referral.case_id == str(case_id), referral.joins_open_case.is_(False)
    )
    if opened_at is not None:
        query = query.where(referral.triaged_at <= opened_at)
    row = conn.execute(
        query.order_by(referral.triaged_at.desc(), referral.referral_id.desc()).limit(1)
    ).first()
    if row is None:
        return None
    if row.consent is None:
        return row.referral_id, None
    consent = Consent.model_validate_json(row.consent)
    return row.referral_id, domain.StandingConsent(
        purposes=consent.covers, given_by=consent.given_by, given_at=consent.given_at
    )


def opening_consent(conn: Connection, case_id: UUID) -> domain.StandingConsent | None:
    opened_at = conn.execute(
        select(cases.c.opened_at).where(cases.c.case_id == str(case_id))
    ).scalar()
    opening = opening_referral(conn, case_id, opened_at)
    return opening[1] if opening else None


# --- the chronology -------------------------------------------------------------------


def chronology(ctx: QueryContext, family_id: UUID, limit: int, cursor: str | None) -> Chronology:
    """Every event about the family from every service, oldest first, a page at a time."""
    table = chronology_entries
    in_scope = family_visible(ctx.scope, family_id)
    query = select(table).where(table.c.family_id == str(family_id), in_scope)
    if cursor is not None:
        after_time, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                table.c.occurred_at > after_time,
                and_(table.c.occurred_at == after_time, table.c.event_id > after_id),
            )
        )
    rows = ctx.conn.execute(
        query.order_by(table.c.occurred_at, table.c.event_id).limit(limit + 1)
    ).all()
    if not rows and cursor is None:
        raise NotFound(
            f"No chronology for family {family_id}.",
            resource=("family_chronology", str(family_id)),
        )
    involved = ctx.conn.execute(
        select(family_involvement)
        .where(family_involvement.c.family_id == str(family_id), in_scope)
        .order_by(family_involvement.c.last_seen_at.desc(), family_involvement.c.kind)
    ).all()
    ctx.saw("family_chronology", family_id)
    page = rows[:limit]
    next_cursor = (
        _encode_cursor(page[-1].occurred_at, page[-1].event_id) if len(rows) > limit else None
    )
    return Chronology(
        family_id=family_id,
        entries=[ChronologyEntry.model_validate(row, from_attributes=True) for row in page],
        next_cursor=next_cursor,
        involved=[InvolvedParty.model_validate(row, from_attributes=True) for row in involved],
    )


def _encode_cursor(occurred_at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{event_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        occurred_at, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(occurred_at), str(UUID(event_id))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Invalid.field(
            "query.cursor",
            "not a valid cursor",
            "cursor",
            "The cursor is not one this API gave out.",
        ) from exc


# --- cases ----------------------------------------------------------------------------


def case_list(
    ctx: QueryContext,
    review: CaseFilter | None,
    lead_professional: str | None,
    locality: str | None,
    limit: int,
) -> CaseList:
    """Open and stepped-up cases first by review date, of those the caller may see."""
    query = select(cases).where(visible(ctx.scope))
    if review is CaseFilter.OVERDUE:
        query = query.where(
            and_(
                cases.c.status == domain.CaseStatus.OPEN.value,
                cases.c.review_due < ctx.now.date(),
            )
        )
    if locality is not None:
        query = query.where(cases.c.locality == locality)
    if lead_professional == "me":
        query = query.where(led_by(ctx.scope))
    elif lead_professional is not None:
        query = query.where(
            or_(
                cases.c.lead_worker_id == lead_professional,
                cases.c.lead_email == lead_professional.lower(),
            )
        )
    query = query.order_by(cases.c.review_due, cases.c.case_id)
    rows = ctx.conn.execute(query.limit(limit)).all()
    ctx.saw("case_list", lead_professional or review or "all")
    ctx.listed_ids("case", *(row.case_id for row in rows))
    return CaseList(items=[_summary(row, ctx.now) for row in rows])


def case_view(
    ctx: QueryContext, case_id: UUID, directory: Identities | None = None
) -> tuple[CaseView, str]:
    """The case and its `ETag` (its version, for `If-Match`)."""
    version = EventStore.stream_version(ctx.conn, domain.stream_id(case_id))
    row = ctx.conn.execute(
        select(cases).where(cases.c.case_id == str(case_id), visible(ctx.scope))
    ).first()
    if row is None:
        raise no_case(case_id)
    referral_children = ctx.conn.execute(
        select(family_referrals.c.children).where(family_referrals.c.case_id == str(case_id))
    ).all()
    ctx.saw("case", case_id)
    detail = json.loads(row.detail)
    children: dict[str, dict[str, Any]] = {}
    for (listed,) in referral_children:
        children.update({child["person_id"]: child for child in json.loads(listed)})
    view = CaseView(
        **_summary(row, ctx.now).model_dump(),
        episode=row.episode,
        children=list(children.values()),
        assessment=detail["assessment"],
        package=detail["package"],
        actions=detail["actions"],
        outcomes=list(detail["outcomes"].values()),
        reviews=detail["reviews"],
        step_up=detail["step_up"],
        step_down=detail["step_down"],
        closure=detail["closure"],
        earlier_episodes=detail["episodes"],
        services_started=detail.get("services_started", []),
        **_sharing_view(ctx, row, detail.get("case", {}), directory),
    )
    return view, etag(version)


def _sharing_view(
    ctx: QueryContext, row: Any, state: dict[str, Any], directory: Identities | None
) -> dict[str, Any]:
    """The team around the family, consent, override and schools of the case's view."""

    def name_of(client_id: str) -> str | None:
        client = directory.client(client_id) if directory is not None else None
        return client.name if client is not None and client.kind == "partner" else None

    team = [
        TeamMemberView(**member, name=name_of(member["member_id"]), source="team")
        for member in state.get("team", ())
    ]
    referrers = ctx.conn.execute(
        select(family_referrals.c.referrer_id, func.min(family_referrals.c.received_at))
        .where(
            family_referrals.c.case_id == row.case_id, family_referrals.c.referrer_id.is_not(None)
        )
        .group_by(family_referrals.c.referrer_id)
        .order_by(family_referrals.c.referrer_id)
    ).all()
    team += [
        TeamMemberView(
            member_id=referrer_id,
            member_kind=TeamMemberKind.PARTNER,
            name=name_of(referrer_id),
            role="referrer",
            source="referral",
            added_at=received_at,
            added_by=None,
        )
        for referrer_id, received_at in referrers
    ]
    consent: ConsentView | None = None
    if state.get("consent_decided"):
        standing = standing_consent_of(state.get("consent"))
        consent = (
            ConsentView(
                status="withdrawn",
                source="recorded",
                referral_id=None,
                given_by=None,
                given_at=None,
                purposes=[],
            )
            if standing is None
            else ConsentView(
                status="narrowed" if standing.narrowed_at else "given",
                source="recorded",
                referral_id=None,
                given_by=standing.given_by,
                given_at=standing.given_at,
                purposes=list(standing.purposes),
                narrowed_at=standing.narrowed_at,
            )
        )
    elif (opening := opening_referral(ctx.conn, UUID(row.case_id), row.opened_at)) is not None:
        referral_id, standing = opening
        if standing is not None:
            consent = ConsentView(
                status="given",
                source="referral",
                referral_id=referral_id,
                given_by=standing.given_by,
                given_at=standing.given_at,
                purposes=list(standing.purposes),
            )
    override = state.get("override")
    return {
        "team": team,
        "consent": consent,
        "safeguarding_override": None
        if override is None
        else OverrideView(
            **override,
            stands=authority_date(ctx.now) <= date.fromisoformat(override["review_date"]),
        ),
        "schools": [
            ChildSchoolView(person_id=child, school_id=school, school_name=name_of(school))
            for child, school in state.get("schools", ())
        ],
    }


def _summary(row: Any, now: datetime) -> CaseSummary:
    return CaseSummary(
        case_id=row.case_id,
        family_id=row.family_id,
        status=row.status,
        locality=row.locality,
        lead_professional=LeadProfessional(
            worker_id=row.lead_worker_id, name=row.lead_name, email=row.lead_email
        ),
        opened_at=row.opened_at,
        review_due=row.review_due,
        review_overdue=(
            row.status == domain.CaseStatus.OPEN.value
            and row.review_due is not None
            and row.review_due < now.date()
        ),
        re_referral=row.re_referral,
    )


def assessment_draft(ctx: QueryContext, case_id: UUID) -> AssessmentDraftView:
    """For those who work the case: its lead professional, their team, their managers."""
    workable_case(ctx.conn, ctx.scope, case_id)
    row = ctx.conn.execute(
        select(assessment_drafts).where(assessment_drafts.c.case_id == str(case_id))
    ).first()
    if row is None:
        raise NotFound(f"No assessment draft for case {case_id}.")
    ctx.saw("assessment_draft", case_id)
    saved = AssessmentSubmission.model_validate_json(row.draft)
    return draft_view(case_id, saved, row.saved_by, row.saved_at)


def draft_of(submission: AssessmentSubmission) -> domain.AssessmentDraft:
    return domain.AssessmentDraft(
        factors=tuple(submission.factors),
        needs=tuple(
            IdentifiedNeed(need_id=need.need_id or uuid4(), **need.model_dump(exclude={"need_id"}))
            for need in submission.needs
        ),
        recommended_level_of_need=submission.recommended_level_of_need,
        people=tuple(submission.people),
        views=submission.views,
    )


def draft_view(
    case_id: UUID, saved: AssessmentSubmission, saved_by: str, saved_at: datetime
) -> AssessmentDraftView:
    missing = domain.missing_for_completion(draft_of(saved))
    return AssessmentDraftView(
        case_id=case_id,
        saved_at=saved_at,
        saved_by=saved_by,
        draft=json.loads(saved.model_dump_json(exclude={"complete"})),
        missing=[{"field": m.field, "message": m.message} for m in missing],
    )


# --- performance ----------------------------------------------------------------------


def report_locality(scope: Scope, locality: str | None) -> str | None:
    """The locality a manager reports on: any for authority-wide ones, else one of theirs."""
    if not scope.has_role(MANAGER_ROLE):
        raise Forbidden("The performance report is for managers.")
    if not scope.localities:
        return locality
    if locality is None and len(scope.localities) == 1:
        return next(iter(scope.localities))
    if locality is None:
        raise Invalid.field(
            "query.locality",
            f"one of {', '.join(sorted(scope.localities))}",
            "missing",
            "Name the locality to report on.",
        )
    if locality not in scope.localities:
        raise Forbidden(f"{locality} is not one of your localities.")
    return locality


def _check_period(from_: date | None, to: date | None) -> None:
    if from_ is not None and to is not None and from_ > to:
        raise Invalid.field(
            "query.to", "must not be before from", "range", "The period ends before it starts."
        )


def performance(
    ctx: QueryContext,
    locality: str | None,
    from_: date | None,
    to: date | None,
    rules: claims.ClaimRules,
) -> PerformanceReport:
    locality = report_locality(ctx.scope, locality)
    _check_period(from_, to)
    report = _report(locality, from_, to, ctx.now, rules, *_report_rows(ctx, locality))
    return _with_encompass(ctx, report, locality, from_, to)


def performance_by_month(
    ctx: QueryContext,
    locality: str | None,
    from_: date | None,
    to: date | None,
    rules: claims.ClaimRules,
) -> tuple[PerformanceReport, list[tuple[date, PerformanceReport]]]:
    """The report for the period and for each calendar month of it, for the charts. An
    open period is the twelve months to today."""
    locality = report_locality(ctx.scope, locality)
    _check_period(from_, to)
    to = to or authority_date(ctx.now)
    from_ = from_ or domain.add_months(to.replace(day=1), -11)
    rows = _report_rows(ctx, locality)
    months = []
    start = from_.replace(day=1)
    while start <= to:
        end = domain.add_months(start, 1) - timedelta(days=1)
        period = (max(start, from_), min(end, to))
        months.append((start, _report(locality, *period, ctx.now, rules, *rows)))
        start = domain.add_months(start, 1)
    report = _report(locality, from_, to, ctx.now, rules, *rows)
    return _with_encompass(ctx, report, locality, from_, to), months


def _report_rows(ctx: QueryContext, locality: str | None) -> tuple:
    case_query = select(cases)
    referral_query = select(family_referrals)
    review_query = select(case_reviews)
    if locality is not None:
        case_query = case_query.where(cases.c.locality == locality)
        referral_query = referral_query.where(family_referrals.c.locality == locality)
        review_query = review_query.where(case_reviews.c.locality == locality)
    conn = ctx.conn
    return (
        conn.execute(case_query).all(),
        conn.execute(referral_query).all(),
        conn.execute(review_query).all(),
        conn.execute(select(cases.c.family_id, cases.c.opened_at)).all(),
        conn.execute(select(front_door_consultations)).all(),
        conn.execute(select(family_referrals.c.family_id, family_referrals.c.received_at)).all(),
    )


def _with_encompass(
    ctx: QueryContext,
    report: PerformanceReport,
    locality: str | None,
    from_: date | None,
    to: date | None,
) -> PerformanceReport:
    """The authority-wide report also counts Operation Encompass notices: they belong to
    schools, not localities, so a locality's report leaves them out."""
    if locality is not None:
        return report
    notices = ctx.conn.execute(select(encompass_notices).where(*_issued_within(from_, to))).all()
    return report.model_copy(update={"encompass": encompass_measures(notices, ctx.now)})


def _issued_within(from_: date | None, to: date | None) -> list:
    issued = encompass_notices.c.issued_at
    where = []
    if from_ is not None:
        where.append(issued >= datetime.combine(from_, datetime.min.time(), tzinfo=UTC))
    if to is not None:
        where.append(
            issued < datetime.combine(to + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        )
    return where


def encompass_measures(notices, now: datetime) -> EncompassMeasures:
    """Sent, acknowledged in time and late, per school; late once the deadline has passed
    without an acknowledgement before it."""

    def in_time(notice) -> bool:
        return notice.acknowledged_at is not None and notice.acknowledged_at < notice.due_by

    def late(notice) -> bool:
        return not in_time(notice) and (notice.acknowledged_at is not None or notice.due_by <= now)

    by_school: dict[str, list] = {}
    for notice in notices:
        if notice.school_id is not None:
            by_school.setdefault(notice.school_id, []).append(notice)
    return EncompassMeasures(
        notices_sent=len(notices),
        acknowledged_in_time=sum(1 for n in notices if in_time(n)),
        late=sum(1 for n in notices if late(n)),
        without_school=sum(1 for n in notices if n.school_id is None),
        by_school={
            school: EncompassSchoolMeasures(
                sent=len(sent),
                acknowledged_in_time=sum(1 for n in sent if in_time(n)),
                late=sum(1 for n in sent if late(n)),
            )
            for school, sent in sorted(by_school.items())
        },
    )


def _report(
    locality,
    from_,
    to,
    now,
    rules: claims.ClaimRules,
    case_rows,
    referral_rows,
    review_rows,
    openings,
    consultation_rows,
    family_referral_times,
):
    def within(moment: datetime | date | None) -> bool:
        if moment is None:
            return False
        day = moment.date() if isinstance(moment, datetime) else moment
        return (from_ is None or day >= from_) and (to is None or day <= to)

    def stage_time(pairs) -> StageTime:
        return StageTime(**_spread([(end - start).total_seconds() / 86400 for start, end in pairs]))

    received = [r for r in referral_rows if within(r.received_at)]
    triaged = [r for r in referral_rows if within(r.triaged_at)]
    referral_of = {r.case_id: r for r in referral_rows if r.case_id is not None}
    opened = [c for c in case_rows if within(c.opened_at)]
    assessed = [c for c in case_rows if within(c.assessed_at) and c.opened_at is not None]
    started = [c for c in case_rows if within(c.service_started_on) and c.assessed_at is not None]
    start_days = [_days_to_start(c) for c in started]
    in_four_weeks = sum(1 for days in start_days if days <= FOUR_WEEKS_DAYS)
    reviews = [r for r in review_rows if within(r.reviewed_at)]
    on_time = sum(1 for r in reviews if r.on_time)
    re_referrals = sum(1 for c in opened if c.re_referral)
    return PerformanceReport(
        locality=locality,
        period_from=from_,
        period_to=to,
        referrals_by_source=dict(Counter(r.referral_source for r in received)),
        referrals_by_route=dict(Counter(r.route for r in triaged)),
        referral_to_triage=stage_time((r.received_at, r.triaged_at) for r in triaged),
        triage_to_allocation=stage_time(
            (referral_of[c.case_id].triaged_at, c.opened_at)
            for c in opened
            if c.case_id in referral_of and c.episode == 1
        ),
        allocation_to_assessment=stage_time((c.opened_at, c.assessed_at) for c in assessed),
        assessment_to_service_start=ServiceStartTime(
            **_spread(start_days),
            within_four_weeks=in_four_weeks,
            within_four_weeks_percent=_percent(in_four_weeks, len(start_days)),
            waiting_over_four_weeks_now=sum(1 for c in case_rows if _waiting(c, now) is not None),
        ),
        reviews=len(reviews),
        reviews_on_time=on_time,
        reviews_on_time_percent=round(100 * on_time / len(reviews), 1) if reviews else None,
        reviews_overdue_now=sum(
            1
            for c in case_rows
            if c.status == domain.CaseStatus.OPEN.value
            and c.review_due is not None
            and c.review_due < now.date()
        ),
        step_ups=sum(1 for c in case_rows if within(c.stepped_up_at)),
        step_downs=sum(1 for c in case_rows if within(c.stepped_down_at)),
        closures_by_reason=dict(
            Counter(c.closure_reason for c in case_rows if within(c.closed_at))
        ),
        cases_opened=len(opened),
        re_referrals=re_referrals,
        re_referral_percent=round(100 * re_referrals / len(opened), 1) if opened else None,
        consultations=ConsultationCounts(
            requested=sum(1 for c in consultation_rows if within(c.requested_at)),
            requested_by_organisation_type=dict(
                Counter(
                    c.organisation_type or "unknown"
                    for c in consultation_rows
                    if within(c.requested_at)
                )
            ),
            advised_by_outcome=dict(
                Counter(c.advice for c in consultation_rows if within(c.advised_at))
            ),
            referred=sum(1 for c in consultation_rows if within(c.referred_at)),
        ),
        supporting_families_claimable=sum(
            1
            for c in case_rows
            if within(c.closed_at)
            and claims.assess(
                episode_facts(c, openings, family_referral_times),
                rules,
                authority_date(now),
            ).status
            is claims.ClaimStatus.CLAIMABLE
        ),
    )


# The seeds' measure: Brent averaged "4 weeks from completed assessment to service delivery".
FOUR_WEEKS_DAYS = 28


def _spread(days: list[float]) -> dict[str, Any]:
    """How many, the median and the 90th percentile, to a tenth of a day."""
    if not days:
        return {"cases": 0, "median_days": None, "p90_days": None}
    p90 = statistics.quantiles(days, n=10, method="inclusive")[8] if len(days) > 1 else days[0]
    return {
        "cases": len(days),
        "median_days": round(statistics.median(days), 1),
        "p90_days": round(p90, 1),
    }


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _days_to_start(case: Any) -> int:
    """Whole days from the day the assessment was completed to the first service start."""
    return (case.service_started_on - authority_date(case.assessed_at)).days


def _waiting(case: Any, now: datetime) -> int | None:
    """Days an open, assessed case has waited for its first service, when over 4 weeks."""
    if (
        case.status != domain.CaseStatus.OPEN.value
        or case.assessed_at is None
        or case.service_started_on is not None
    ):
        return None
    days = (authority_date(now) - authority_date(case.assessed_at)).days
    return days if days > FOUR_WEEKS_DAYS else None


def outside_four_weeks(
    ctx: QueryContext, locality: str | None, from_: date | None, to: date | None
) -> OutsideFourWeeksList:
    """The late first starts in the period and the cases waiting over 4 weeks now."""
    locality = report_locality(ctx.scope, locality)
    _check_period(from_, to)
    query = select(cases).where(visible(ctx.scope), cases.c.assessed_at.is_not(None))
    if locality is not None:
        query = query.where(cases.c.locality == locality)
    if from_ is not None:
        query = query.where(
            or_(cases.c.service_started_on.is_(None), cases.c.service_started_on >= from_)
        )
    if to is not None:
        query = query.where(
            or_(cases.c.service_started_on.is_(None), cases.c.service_started_on <= to)
        )
    items = []
    for row in ctx.conn.execute(query).all():
        days = _waiting(row, ctx.now) if row.service_started_on is None else _days_to_start(row)
        if days is None or days <= FOUR_WEEKS_DAYS:
            continue
        items.append(
            OutsideFourWeeks(
                case_id=row.case_id,
                family_id=row.family_id,
                locality=row.locality,
                lead_professional=LeadProfessional(
                    worker_id=row.lead_worker_id, name=row.lead_name, email=row.lead_email
                ),
                assessed_on=authority_date(row.assessed_at),
                service_started_on=row.service_started_on,
                days=days,
            )
        )
    items.sort(key=lambda item: (-item.days, str(item.case_id)))
    ctx.saw("outside_four_weeks", locality or "all")
    ctx.listed_ids("case", *(str(item.case_id) for item in items))
    return OutsideFourWeeksList(locality=locality, period_from=from_, period_to=to, items=items)


def episode_facts(case: Any, openings, family_referral_times) -> claims.EpisodeFacts:
    """The facts of a case's current episode the claim rules look at, with the family's
    referrals and case openings after its closure."""
    detail = json.loads(case.detail)
    assessment = detail.get("assessment") or {}
    closed_at = case.closed_at

    def after_closure(rows) -> tuple[datetime, ...]:
        if closed_at is None:
            return ()
        return tuple(
            at
            for family_id, at in rows
            if family_id == case.family_id and at is not None and at > closed_at
        )

    return claims.EpisodeFacts(
        case_id=case.case_id,
        family_id=case.family_id,
        headline_needs=frozenset(need["outcome"] for need in assessment.get("needs", ())),
        lead_practitioner=case.lead_worker_id is not None,
        assessed_at=case.assessed_at,
        plan_agreed_at=case.plan_activated_at,
        closed_at=closed_at,
        closure_reason=case.closure_reason,
        every_need_achieved=bool(case.all_needs_achieved),
        referrals_since_closure=after_closure(family_referral_times),
        cases_opened_since_closure=after_closure(openings),
    )


def supporting_families(
    ctx: QueryContext, rules: claims.ClaimRules, as_at: date, status: str | None = None
) -> list[tuple[claims.Claim, claims.EpisodeFacts]]:
    """Every episode that met the claim rules at its start, with its status on `as_at`,
    of the cases in the caller's localities (all for authority-wide staff)."""
    query = select(cases).where(cases.c.assessed_at.is_not(None))
    if ctx.scope.localities:
        query = query.where(cases.c.locality.in_(ctx.scope.localities))
    openings = ctx.conn.execute(select(cases.c.family_id, cases.c.opened_at)).all()
    referral_times = ctx.conn.execute(
        select(family_referrals.c.family_id, family_referrals.c.received_at)
    ).all()
    listed = []
    for case in ctx.conn.execute(query.order_by(cases.c.family_id, cases.c.case_id)):
        facts = episode_facts(case, openings, referral_times)
        claim = claims.assess(facts, rules, as_at)
        wanted = claim.status.value == status if status else True
        if claim.status is not claims.ClaimStatus.NOT_ELIGIBLE and wanted:
            listed.append((claim, facts))
    ctx.saw("supporting_families", as_at.isoformat())
    ctx.listed_ids("family", *sorted({claim.family_id for claim, _ in listed}))
    return listed


CLAIM_FILE_COLUMNS = (
    "family_id",
    "case_id",
    "status",
    "reasons",
    "headline_needs",
    "lead_practitioner",
    "assessment_completed_on",
    "plan_agreed_on",
    "closed_on",
    "closure_reason",
    "sustained_on",
)


def claim_file(listed: list[tuple[claims.Claim, claims.EpisodeFacts]]) -> str:
    """One family episode a line, with the facts that evidence each rule."""

    def day(moment: datetime | None) -> str:
        return authority_date(moment).isoformat() if moment else ""

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CLAIM_FILE_COLUMNS)
    for claim, facts in listed:
        writer.writerow(
            [
                claim.family_id,
                claim.case_id,
                claim.status.value,
                " ".join(claim.reasons),
                " ".join(sorted(facts.headline_needs)),
                "yes" if facts.lead_practitioner else "no",
                day(facts.assessed_at),
                day(facts.plan_agreed_at),
                day(facts.closed_at),
                facts.closure_reason or "",
                claim.sustained_on.isoformat() if claim.sustained_on else "",
            ]
        )
    return out.getvalue()


def as_csv(report: PerformanceReport) -> str:
    """One measure a line: `measure,breakdown,value`, for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["measure", "breakdown", "value"])
    for name, value in report.model_dump(mode="json").items():
        for breakdown, item in _flattened(value):
            writer.writerow([name, breakdown, "" if item is None else item])
    return out.getvalue()


def _flattened(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A measure's values by breakdown; a nested one as `outer.inner` (e.g. the
    consultations' `advised_by_outcome.refer`)."""
    if not isinstance(value, dict):
        return [(prefix, value)]
    return [
        pair
        for key, item in value.items()
        for pair in _flattened(item, f"{prefix}.{key}" if prefix else key)
    ]


# --- Annex A list 2 (issue 21) ---------------------------------------------------------


def annex_a_early_help(ctx: QueryContext, as_at: date, months: int) -> list[returns.Row]:
    """Ofsted's list 2 as the hub would have given it at the end of `as_at`: from the events
    recorded by then, of the cases in the caller's localities (all for authority-wide staff)."""
    if as_at > authority_date(ctx.now):
        raise Invalid.field(
            "query.as_at", "must not be after today", "date_in_future", "The list is of the past."
        )
    if as_at < returns.EARLIEST_AS_AT:
        raise Invalid.field(
            "query.as_at",
            f"must be {returns.EARLIEST_AS_AT.isoformat()} or later",
            "date_too_early",
            "The hub holds no early help from before then.",
        )
    cutoff = returns.recorded_by(as_at)
    in_scope = select(cases.c.case_id)
    if ctx.scope.localities:
        in_scope = in_scope.where(cases.c.locality.in_(ctx.scope.localities))
    events: dict[str, list] = {}
    for row in ctx.conn.execute(
        select(case_inputs.c.case_id, case_inputs.c.event_type, case_inputs.c.data_json)
        .where(case_inputs.c.case_id.in_(in_scope), case_inputs.c.occurred_at <= cutoff)
        .order_by(case_inputs.c.case_id, case_inputs.c.occurred_at, case_inputs.c.event_id)
    ):
        model = event_model(row.event_type)
        events.setdefault(row.case_id, []).append(model.model_validate_json(row.data_json))
    children: dict[str, dict[str, returns.ListedChild]] = {}
    for case_id, listed in ctx.conn.execute(
        select(family_referrals.c.case_id, family_referrals.c.children).where(
            family_referrals.c.case_id.in_(in_scope), family_referrals.c.triaged_at <= cutoff
        )
    ):
        for child in json.loads(listed):
            children.setdefault(case_id, {})[child["person_id"]] = returns.ListedChild(
                child["person_id"],
                _day(child.get("date_of_birth")),
                _day(child.get("expected_date_of_birth")),
            )
    for case_id, case_events in events.items():
        for child in returns.stepped_down_children(case_events):
            children.setdefault(case_id, {}).setdefault(child.person_id, child)
    listed_cases = [
        (case_id, case_events, list(children.get(case_id, {}).values()))
        for case_id, case_events in sorted(events.items())
    ]
    rows = returns.early_help_list(listed_cases, as_at, months)
    ctx.saw("annex_a_list_2", as_at.isoformat())
    ctx.listed_ids("person", *sorted({row.child_id for row in rows}))
    return rows


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


# --- subject access -----------------------------------------------------------------


def family_records(ctx: QueryContext, family_id: UUID) -> subject_access.FamilyRecords:
    """Everything case plan holds about the family: each case with its assessment, plan,
    reviews, step-up or down and closure; drafts not yet completed; the chronology and
    who is involved with the family."""
    subject_access.check_allowed(ctx.scope)
    family = str(family_id)
    of_family = select(cases.c.case_id).where(cases.c.family_id == family)

    def section(name: str, title: str, query: Any, description: str = "") -> Any:
        return subject_access.section(ctx.conn, name, title, query, description)

    sections = [
        section(
            "cases",
            "Cases: assessment, plan, reviews, step-up or down, closure",
            select(cases).where(cases.c.family_id == family).order_by(cases.c.opened_at),
            "`detail` holds the assessment, the package, actions, outcomes, reviews and "
            "the closure as the practitioners recorded them.",
        ),
        section(
            "reviews",
            "Reviews of the plan",
            select(case_reviews)
            .where(case_reviews.c.case_id.in_(of_family))
            .order_by(case_reviews.c.reviewed_at),
        ),
        section(
            "assessment_drafts",
            "Assessments being written (not yet completed)",
            select(assessment_drafts)
            .where(assessment_drafts.c.case_id.in_(of_family))
            .order_by(assessment_drafts.c.case_id),
        ),
        section(
            "referrals",
            "Referrals about the family",
            select(family_referrals)
            .where(family_referrals.c.family_id == family)
            .order_by(family_referrals.c.received_at),
        ),
        section(
            "chronology",
            "The family's chronology",
            select(chronology_entries)
            .where(chronology_entries.c.family_id == family)
            .order_by(chronology_entries.c.occurred_at, chronology_entries.c.event_id),
        ),
        section(
            "involved",
            "Who else is working with the family",
            select(family_involvement)
            .where(family_involvement.c.family_id == family)
            .order_by(family_involvement.c.first_seen_at, family_involvement.c.kind),
        ),
    ]
    streams = [domain.stream_id(UUID(row["case_id"])) for row in sections[0].rows]
    ctx.saw(subject_access.RESOURCE_TYPE, family_id)
    return subject_access.records(ctx.conn, "caseplan", family_id, sections, stream_ids=streams)


# --- retention (issue 16) ---------------------------------------------------------------


def retention_due(ctx: QueryContext, schedule: RetentionSchedule) -> RetentionDue:
    """What the next retention run would dispose of (as of today), and what is held."""
    today = authority_date(ctx.now)
    due, held = retention.falling_due(ctx.conn, schedule, today, ctx.scope)
    ctx.saw("retention_due", today.isoformat())
    ctx.listed_ids("family", *(f.family_id for f in due), *(f.family_id for f, _ in held))
    return RetentionDue(
        as_of=today,
        due=[_falling_due(family) for family in due],
        held=[
            HeldFamily(
                **_falling_due(family).model_dump(),
                hold=LegalHoldView(
                    family_id=hold.family_id,
                    reason=hold.reason,
                    placed_by=hold.placed_by,
                    placed_at=hold.placed_at,
                ),
            )
            for family, hold in held
        ],
    )


def _falling_due(family: retention.FamilyRetention) -> FamilyFallingDue:
    return FamilyFallingDue(
        family_id=family.family_id,
        due=family.due,
        case_ids=list(family.case_ids),
        referral_ids=list(family.referral_ids),
    )
