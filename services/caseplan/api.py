"""Case plan's HTTP API: thin, it maps requests to commands on the case and to read models."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy import and_, func, or_, select

from caseplan import domain
from caseplan.projections import (
    assessment_drafts,
    case_inputs,
    case_reviews,
    cases,
    chronology_entries,
    family_involvement,
    family_referrals,
)
from caseplan.schemas import (
    ActionSubmission,
    AssessmentDraftView,
    AssessmentRecorded,
    AssessmentSubmission,
    CaseFilter,
    CaseList,
    CaseSummary,
    CaseView,
    Chronology,
    ChronologyEntry,
    ClosureSubmission,
    InvolvedParty,
    LeadProfessional,
    Median,
    OutcomeSubmission,
    PerformanceReport,
    Recorded,
    ReviewSubmission,
    StepDownSubmission,
    StepUpSubmission,
)
from caseplan.settings import CaseplanSettings, current_settings
from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.commands import CommandResult, run_command
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.base import EventData
from hub.contracts.caseplan import IdentifiedNeed
from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.common import IsoDate
from hub.contracts.registry import event_model
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import FieldError, Problem, problem_responses, problem_type
from hub.service import Runtime, UnitOfWork, runtime_of
from hub.store import EventStore, PendingEvent

router = APIRouter(prefix="/v1", tags=["cases"])


Settings = Annotated[CaseplanSettings, Depends(current_settings)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Reader = Annotated[Principal, Depends(require_scopes("cases:read"))]
Worker = Annotated[Principal, Depends(require_scopes("cases:write"))]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=40,
        description="The case's `ETag` from `GET /v1/cases/{case_id}`: the command is refused "
        "(409 `case-changed`) if someone else changed the case since, so two people "
        "reviewing one case at once cannot both record a review.",
    ),
]

MANAGER_ROLE = "team_manager"
# Step-downs get case ids derived from the social care reference, so that the same
# family handed down twice under one reference is one case (the second is a 409).
_STEP_DOWN_NAMESPACE = uuid5(NAMESPACE_URL, "https://earlyhelp.example/step-downs")


# --- the chronology ------------------------------------------------------------------


@router.get(
    "/families/{family_id}/chronology",
    response_model=Chronology,
    responses=problem_responses(401, 403, 404, 422),
    summary="Everything that happened with a family, in order, and who is involved",
    tags=["families"],
)
async def family_chronology(
    family_id: UUID,
    runtime: RuntimeDep,
    caller: Annotated[Principal, Depends(require_scopes("chronology:read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Chronology:
    """Every event about the family from every service, oldest first, a page at a time,
    with `involved`: every organisation, team and professional working with the family.
    """
    table = chronology_entries
    query = select(table).where(table.c.family_id == str(family_id))
    if cursor is not None:
        after_time, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                table.c.occurred_at > after_time,
                and_(table.c.occurred_at == after_time, table.c.event_id > after_id),
            )
        )
    query = query.order_by(table.c.occurred_at, table.c.event_id).limit(limit + 1)
    involved_query = (
        select(family_involvement)
        .where(family_involvement.c.family_id == str(family_id))
        .order_by(family_involvement.c.last_seen_at.desc(), family_involvement.c.kind)
    )

    def read(conn):
        return conn.execute(query).all(), conn.execute(involved_query).all()

    rows, involved = await runtime.read(read)
    if not rows and cursor is None:
        raise Problem.not_found(f"No chronology for family {family_id}.")
    await record_read(runtime, caller, "family_chronology", str(family_id))
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
        raise Problem.unprocessable(
            "The cursor is not one this API gave out.",
            errors=[FieldError(field="query.cursor", message="not a valid cursor", code="cursor")],
        ) from exc


# --- reading cases -------------------------------------------------------------------


@router.get(
    "/cases",
    response_model=CaseList,
    responses=problem_responses(401, 403, 422),
    summary="Cases, e.g. those whose review is overdue, or the caller's own",
)
async def list_cases(
    runtime: RuntimeDep,
    caller: Reader,
    now: Now,
    review: Annotated[
        CaseFilter | None, Query(description="`overdue`: open cases whose review date passed.")
    ] = None,
    lead_professional: Annotated[
        str | None,
        Query(
            max_length=254,
            description="`me` for the caller's own cases, or a worker id or e-mail address.",
        ),
    ] = None,
    locality: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> CaseList:
    """Open and stepped-up cases first by review date. A lead professional's own view is
    `?lead_professional=me` (add `review=overdue` for their overdue reviews). Staff
    limited to localities or teams see only those cases and the ones they lead.
    """
    query = select(cases)
    if not caller.authority_wide:
        query = query.where(_visible_to(caller))
    if review is CaseFilter.OVERDUE:
        query = query.where(
            and_(cases.c.status == domain.CaseStatus.OPEN.value, cases.c.review_due < now.date())
        )
    if locality is not None:
        query = query.where(cases.c.locality == locality)
    if lead_professional == "me":
        query = query.where(_led_by(caller))
    elif lead_professional is not None:
        query = query.where(
            or_(
                cases.c.lead_worker_id == lead_professional,
                cases.c.lead_email == lead_professional.lower(),
            )
        )
    query = query.order_by(cases.c.review_due, cases.c.case_id)
    rows = await runtime.read(lambda conn: conn.execute(query.limit(limit)).all())
    await record_read(runtime, caller, "case_list", lead_professional or review or "all")
    return CaseList(items=[_summary(row, now) for row in rows])


@router.get(
    "/cases/{case_id}",
    response_model=CaseView,
    responses=problem_responses(401, 403, 404),
    summary="A family's case: assessment, plan, reviews, step-up/down and closure",
)
async def get_case(
    case_id: UUID, response: Response, runtime: RuntimeDep, caller: Reader, now: Now
) -> CaseView:
    """The `ETag` header is the case's version, for `If-Match` on the commands that change it."""

    def read(conn):
        response.headers["ETag"] = _etag(EventStore.stream_version(conn, domain.stream_id(case_id)))
        row = conn.execute(select(cases).where(cases.c.case_id == str(case_id))).first()
        children = conn.execute(
            select(family_referrals.c.children).where(family_referrals.c.case_id == str(case_id))
        ).all()
        return row, children

    row, referral_children = await runtime.read(read)
    if row is None:
        raise Problem.not_found(f"No case {case_id}.")
    if not _may_see(caller, row):
        raise Problem.forbidden(
            f"Case {case_id} belongs to {row.locality}: not one of your localities or teams."
        )
    await record_read(runtime, caller, "case", str(case_id))
    detail = json.loads(row.detail)
    children: dict[str, dict[str, Any]] = {}
    for (listed,) in referral_children:
        children.update({child["person_id"]: child for child in json.loads(listed)})
    return CaseView(
        **_summary(row, now).model_dump(),
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
    )


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


# --- commands ------------------------------------------------------------------------


_ALLOCATION_INPUTS = (CaseAllocated.event_type, PanelDecisionRecorded.event_type)


def _load(uow: UnitOfWork, case_id: UUID) -> domain.Case | None:
    """Allocation's inputs and the own stream, merged in time order and folded."""
    inputs = uow.conn.execute(
        select(case_inputs.c.event_type, case_inputs.c.occurred_at, case_inputs.c.data_json)
        .where(
            case_inputs.c.case_id == str(case_id),
            case_inputs.c.event_type.in_(_ALLOCATION_INPUTS),
        )
        .order_by(case_inputs.c.occurred_at, case_inputs.c.event_id)
    ).all()
    history: list[tuple[datetime, int, EventData]] = [
        (row.occurred_at, 0, event_model(row.event_type).model_validate_json(row.data_json))
        for row in inputs
    ]
    history += [
        (recorded.occurred_at, 1, recorded.decode())
        for recorded in uow.read_stream(domain.stream_id(case_id))
    ]
    history.sort(key=lambda item: (item[0], item[1]))
    return domain.replay(event for _, _, event in history)


# --- who may see and work which case --------------------------------------------------


def _is_lead(caller: Principal, row: Any) -> bool:
    if row.lead_staff_client_id is not None:
        return caller.subject == row.lead_staff_client_id
    return bool(row.lead_email) and caller.subject.lower() == row.lead_email.lower()


def _may_see(caller: Principal, row: Any) -> bool:
    """Staff see the cases of their localities and teams, and those they lead."""
    return (
        caller.authority_wide
        or row.locality in caller.localities
        or row.team_id in caller.teams
        or _is_lead(caller, row)
    )


def _may_work(caller: Principal, row: Any) -> bool:
    """The lead professional and their team work a case; a manager works their localities'."""
    return (
        caller.authority_wide
        or _is_lead(caller, row)
        or row.team_id in caller.teams
        or (MANAGER_ROLE in caller.roles and row.locality in caller.localities)
    )


def _require_may_work(conn: Any, caller: Principal, case_id: UUID) -> None:
    row = conn.execute(select(cases).where(cases.c.case_id == str(case_id))).first()
    if row is not None and caller.kind == "staff" and not _may_work(caller, row):
        raise Problem.forbidden(
            f"Case {case_id} is worked by its lead professional, their team "
            f"({row.team_id}) and the managers of {row.locality}."
        )


def _led_by(caller: Principal):
    """SQL for the cases the caller leads: allocation names the worker's staff client id
    when the registry links one; otherwise a staff client may be named by the e-mail."""
    return or_(
        cases.c.lead_staff_client_id == caller.subject,
        and_(
            cases.c.lead_staff_client_id.is_(None),
            func.lower(cases.c.lead_email) == caller.subject.lower(),
        ),
    )


def _visible_to(caller: Principal):
    """SQL for the cases a staff member limited to localities or teams may see."""
    return or_(
        cases.c.locality.in_(caller.localities), cases.c.team_id.in_(caller.teams), _led_by(caller)
    )


def _etag(version: int) -> str:
    return f'"{version}"'


def _decide(
    uow: UnitOfWork,
    case_id: UUID,
    caller: Principal,
    now: datetime,
    decide: Callable[[domain.Case | None], list[EventData]],
    if_match: str | None = None,
) -> list[Any]:
    """Load the case, decide, and append after the version decided on.

    A concurrent command on the same case moves the stream on first: the append
    then fails with ConcurrencyConflict, which run_command answers 409. With
    `if_match`, the caller's own view of the case must still be the current one.
    """
    _require_may_work(uow.conn, caller, case_id)
    current = _load(uow, case_id)
    if if_match is not None and current is not None and if_match.strip() != _etag(current.version):
        raise Problem.conflict(
            f"Case {case_id} changed after you read it (it is now version {current.version}); "
            "read it again and decide whether your change still stands.",
            title="Case changed",
            type=problem_type("case-changed"),
        )
    try:
        events = decide(current)
    except domain.CaseNotFound as exc:
        raise Problem.not_found(f"No case {case_id}.") from exc
    except domain.InvalidCommand as exc:
        raise Problem.unprocessable(
            "The request does not fit the case.",
            title="Invalid request",
            errors=[FieldError(field=e.field, message=e.message, code=e.code) for e in exc.errors],
        ) from exc
    except domain.CaseRuleBroken as exc:
        raise Problem.conflict(
            str(exc), title="Not allowed now", type=problem_type(exc.code)
        ) from exc
    version = current.version if current is not None else 0
    pending = [PendingEvent(event, occurred_at=now) for event in events]
    uow.append(domain.stream_id(case_id), version, pending, actor=caller.subject)
    return events


def _recorded(event: EventData, status: int = 201) -> CommandResult:
    body = Recorded(
        case_id=event.case_id,
        event_type=event.event_type,
        event=json.loads(event.model_dump_json()),
    )
    return CommandResult(status, body, {"Location": f"/v1/cases/{event.case_id}"})


async def _run(runtime, request, caller, idempotency_key, payload, work) -> Response:
    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=payload,
        command=work,
    )


@router.post(
    "/cases/{case_id}/assessments",
    response_model=AssessmentRecorded,
    status_code=201,
    responses={
        # `complete: false` saves the draft (200); only a completed assessment is created.
        200: {"model": AssessmentDraftView, "description": "The draft, saved"},
        **problem_responses(401, 403, 404, 409, 413, 422),
    },
    summary="Save the whole-family assessment as a draft, or complete it",
)
async def submit_assessment(
    case_id: UUID,
    submission: AssessmentSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """With `complete: false` (the default) the draft is saved, however incomplete, and the
    answer lists what it still lacks (200). With `complete: true` every missing part is
    named in a 422; a complete assessment emits `earlyhelp.assessment.completed.v1` (201).
    """
    draft = _draft_of(submission)

    def work(uow: UnitOfWork) -> CommandResult:
        if not submission.complete:
            _require_may_work(uow.conn, caller, case_id)
            if _load(uow, case_id) is None:
                raise Problem.not_found(f"No case {case_id}.")
            return CommandResult(200, _save_draft(uow, case_id, draft, caller, now))
        command = domain.CompleteAssessment(
            case_id=case_id,
            assessment_id=uuid4(),
            draft=draft,
            completed_by=caller.subject,
            completed_at=now,
        )
        [event] = _decide(
            uow, case_id, caller, now, lambda c: domain.complete_assessment(c, command)
        )
        uow.conn.execute(
            assessment_drafts.delete().where(assessment_drafts.c.case_id == str(case_id))
        )
        recorded = AssessmentRecorded(
            case_id=case_id,
            assessment_id=event.assessment_id,
            completed_at=event.completed_at,
            needs=[json.loads(need.model_dump_json()) for need in event.needs],
        )
        return CommandResult(201, recorded, {"Location": f"/v1/cases/{case_id}"})

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.get(
    "/cases/{case_id}/assessments/draft",
    response_model=AssessmentDraftView,
    responses=problem_responses(401, 403, 404),
    summary="The assessment draft saved so far",
)
async def get_draft(case_id: UUID, runtime: RuntimeDep, caller: Reader) -> AssessmentDraftView:
    """For those who work the case: its lead professional, their team, their managers."""

    def read(conn):
        _require_may_work(conn, caller, case_id)
        return conn.execute(
            select(assessment_drafts).where(assessment_drafts.c.case_id == str(case_id))
        ).first()

    row = await runtime.read(read)
    if row is None:
        raise Problem.not_found(f"No assessment draft for case {case_id}.")
    await record_read(runtime, caller, "assessment_draft", str(case_id))
    saved = AssessmentSubmission.model_validate_json(row.draft)
    return _draft_view(case_id, saved, row.saved_by, row.saved_at)


def _draft_of(submission: AssessmentSubmission) -> domain.AssessmentDraft:
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


def _save_draft(
    uow: UnitOfWork, case_id: UUID, draft: domain.AssessmentDraft, caller: Principal, now: datetime
) -> AssessmentDraftView:
    # Needs keep the ids given now, so that a later save or completion refers to them.
    saved = AssessmentSubmission(
        factors=list(draft.factors),
        needs=[need.model_dump() for need in draft.needs],
        recommended_level_of_need=draft.recommended_level_of_need,
        people=list(draft.people),
        views=draft.views,
    )
    values = {"draft": saved.model_dump_json(), "saved_by": caller.subject, "saved_at": now}
    updated = uow.conn.execute(
        assessment_drafts.update()
        .where(assessment_drafts.c.case_id == str(case_id))
        .values(**values)
    )
    if updated.rowcount == 0:
        uow.conn.execute(assessment_drafts.insert().values(case_id=str(case_id), **values))
    return _draft_view(case_id, saved, caller.subject, now)


def _draft_view(
    case_id: UUID, saved: AssessmentSubmission, saved_by: str, saved_at: datetime
) -> AssessmentDraftView:
    missing = domain.missing_for_completion(_draft_of(saved))
    return AssessmentDraftView(
        case_id=case_id,
        saved_at=saved_at,
        saved_by=saved_by,
        draft=json.loads(saved.model_dump_json(exclude={"complete"})),
        missing=[{"field": m.field, "message": m.message} for m in missing],
    )


@router.post(
    "/cases/{case_id}/actions",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Add an action to the family plan: what, who, by when",
)
async def add_action(
    case_id: UUID,
    submission: ActionSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Needs a completed assessment; `need_id`, when given, must be one of its needs."""
    command = domain.AddAction(
        case_id=case_id,
        action_id=uuid4(),
        need_id=submission.need_id,
        what=submission.what,
        who=submission.who,
        by_when=submission.by_when,
        added_by=caller.subject,
        added_at=now,
    )

    def work(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.add_action(c, command))
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.post(
    "/cases/{case_id}/outcomes",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Agree the outcome the plan aims for on one identified need",
)
async def agree_outcome(
    case_id: UUID,
    submission: OutcomeSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The outcome code is the need's Supporting Families headline outcome; a later
    outcome for the same need replaces the earlier one."""
    command = domain.AgreeOutcome(
        case_id=case_id,
        need_id=submission.need_id,
        statement=submission.statement,
        measure=submission.measure,
        agreed_by=caller.subject,
        agreed_at=now,
    )

    def work(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.agree_outcome(c, command))
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.post(
    "/cases/{case_id}/reviews",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Review the plan: progress on every need and the next review date",
)
async def review_plan(
    case_id: UUID,
    submission: ReviewSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    settings: Settings,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Needs an active plan (a panel decision). The next review date is after today and no
    later than the configured maximum (default three months). Emits
    `earlyhelp.plan.reviewed.v1`."""
    command = domain.ReviewPlan(
        case_id=case_id,
        review_id=uuid4(),
        progress=tuple(submission.progress),
        next_review_date=submission.next_review_date,
        reviewed_by=caller.subject,
        reviewed_at=now,
        max_interval_months=settings.max_review_interval_months,
    )

    def work(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.review(c, command), if_match)
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.post(
    "/cases/{case_id}/step-up",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Step the case up to children's social care",
)
async def step_up(
    case_id: UUID,
    submission: StepUpSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Emits `earlyhelp.case.stepped_up.v1`; the case is then held as stepped up: only
    closure is possible."""
    command = domain.StepUp(
        case_id=case_id,
        reason=submission.reason,
        factors=tuple(submission.factors),
        social_care_contact=submission.social_care_contact,
        decided_by=caller.subject,
        stepped_up_at=now,
    )

    def work(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.step_up(c, command), if_match)
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.post(
    "/step-downs",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Children's social care steps a family down to early help",
    tags=["step-downs"],
)
async def step_down(
    submission: StepDownSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Annotated[Principal, Depends(require_scopes("step-downs:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the social care partner may call it. Opens an early help case awaiting
    allocation and emits `earlyhelp.case.stepped_down.v1`, which allocation picks up.
    The same social care reference stepped down twice is a 409."""
    if caller.kind != "partner" or caller.organisation_type != PartnerOrganisationType.SOCIAL_CARE:
        raise Problem.forbidden("Only children's social care may step a family down.")
    case_id = uuid5(_STEP_DOWN_NAMESPACE, f"{caller.subject}:{submission.social_care_reference}")

    def work(uow: UnitOfWork) -> CommandResult:
        family_id = uuid4()
        if submission.early_help_case_id is not None:
            earlier = _load(uow, submission.early_help_case_id)
            if earlier is None:
                raise Problem.unprocessable(
                    "The early help case is not known.",
                    errors=[
                        FieldError(
                            field="early_help_case_id",
                            message="no such early help case",
                            code="unknown",
                        )
                    ],
                )
            family_id = earlier.family_id
        command = domain.StepDown(
            case_id=case_id,
            family_id=family_id,
            social_care_reference=submission.social_care_reference,
            children=tuple(submission.children),
            reason=submission.reason,
            social_care_summary=submission.social_care_summary,
            locality=submission.locality,
            stepped_down_at=now,
        )
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.step_down(c, command))
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


@router.post(
    "/cases/{case_id}/closure",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Close the case with a reason and the outcome on every need",
)
async def close_case(
    case_id: UUID,
    submission: ClosureSubmission,
    request: Request,
    runtime: RuntimeDep,
    caller: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every identified need needs an outcome (achieved or not); `needs_met` needs a
    completed assessment; `other` needs `reason_detail`. Emits `earlyhelp.case.closed.v1`."""
    command = domain.CloseCase(
        case_id=case_id,
        reason=submission.reason,
        reason_detail=submission.reason_detail,
        achieved=tuple((item.need_id, item.achieved) for item in submission.outcomes),
        closed_by=caller.subject,
        closed_at=now,
    )

    def work(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(uow, case_id, caller, now, lambda c: domain.close(c, command), if_match)
        return _recorded(event)

    return await _run(runtime, request, caller, idempotency_key, submission, work)


# --- performance ---------------------------------------------------------------------

_CSV = "text/csv"


@router.get(
    "/reports/performance",
    response_model=PerformanceReport,
    responses={
        **problem_responses(401, 403, 422),
        200: {"content": {"application/json": {}, _CSV: {}}},
    },
    summary="How fast and how well the service works (JSON, or CSV with Accept: text/csv)",
    tags=["reports"],
)
async def performance(
    request: Request,
    runtime: RuntimeDep,
    caller: Reader,
    now: Now,
    locality: Annotated[str | None, Query(max_length=100)] = None,
    # ISO dates only: `?to=0` was read as 1 January 1970.
    from_: Annotated[IsoDate | None, Query(alias="from")] = None,
    to: Annotated[IsoDate | None, Query()] = None,
) -> Any:
    """Managers only (role team_manager). Every measure counts what happened in the period
    (`from` and `to` inclusive, either may be left open) in the locality, if given. A
    manager of some localities reports on those only (on their one locality by default)."""
    if MANAGER_ROLE not in caller.roles:
        raise Problem.forbidden("The performance report is for managers.")
    if caller.localities:
        if locality is None and len(caller.localities) == 1:
            locality = caller.localities[0]
        elif locality is None:
            raise Problem.unprocessable(
                "Name the locality to report on.",
                errors=[
                    FieldError(
                        field="query.locality",
                        message=f"one of {', '.join(caller.localities)}",
                        code="missing",
                    )
                ],
            )
        elif locality not in caller.localities:
            raise Problem.forbidden(f"{locality} is not one of your localities.")
    if from_ is not None and to is not None and from_ > to:
        raise Problem.unprocessable(
            "The period ends before it starts.",
            errors=[FieldError(field="query.to", message="must not be before from", code="range")],
        )

    def read(conn):
        case_query = select(cases)
        referral_query = select(family_referrals)
        review_query = select(case_reviews)
        if locality is not None:
            case_query = case_query.where(cases.c.locality == locality)
            referral_query = referral_query.where(family_referrals.c.locality == locality)
            review_query = review_query.where(case_reviews.c.locality == locality)
        return (
            conn.execute(case_query).all(),
            conn.execute(referral_query).all(),
            conn.execute(review_query).all(),
            conn.execute(select(cases.c.family_id, cases.c.opened_at)).all(),
        )

    case_rows, referral_rows, review_rows, openings = await runtime.read(read)
    report = _report(locality, from_, to, now, case_rows, referral_rows, review_rows, openings)
    if _CSV in request.headers.get("accept", ""):
        return Response(_as_csv(report), media_type=_CSV)
    return report


def _report(locality, from_, to, now, case_rows, referral_rows, review_rows, openings):
    def within(moment: datetime | date | None) -> bool:
        if moment is None:
            return False
        day = moment.date() if isinstance(moment, datetime) else moment
        return (from_ is None or day >= from_) and (to is None or day <= to)

    def median(pairs) -> Median:
        days = [(end - start).total_seconds() / 86400 for start, end in pairs]
        return Median(
            cases=len(days), median_days=round(statistics.median(days), 1) if days else None
        )

    def days_between(start: datetime, end: date) -> tuple[datetime, datetime]:
        return start, datetime.combine(end, datetime.min.time(), tzinfo=UTC)

    received = [r for r in referral_rows if within(r.received_at)]
    triaged = [r for r in referral_rows if within(r.triaged_at)]
    referral_of = {r.case_id: r for r in referral_rows if r.case_id is not None}
    opened = [c for c in case_rows if within(c.opened_at)]
    assessed = [c for c in case_rows if within(c.assessed_at) and c.opened_at is not None]
    started = [c for c in case_rows if within(c.service_start) and c.assessed_at is not None]
    reviews = [r for r in review_rows if within(r.reviewed_at)]
    on_time = sum(1 for r in reviews if r.on_time)
    re_referrals = sum(1 for c in opened if c.re_referral)
    return PerformanceReport(
        locality=locality,
        period_from=from_,
        period_to=to,
        referrals_by_source=dict(Counter(r.referral_source for r in received)),
        referrals_by_route=dict(Counter(r.route for r in triaged)),
        referral_to_triage=median((r.received_at, r.triaged_at) for r in triaged),
        triage_to_allocation=median(
            (referral_of[c.case_id].triaged_at, c.opened_at)
            for c in opened
            if c.case_id in referral_of and c.episode == 1
        ),
        allocation_to_assessment=median((c.opened_at, c.assessed_at) for c in assessed),
        assessment_to_service_start=median(
            days_between(c.assessed_at, c.service_start) for c in started
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
        supporting_families_claimable=sum(
            1 for c in case_rows if within(c.closed_at) and _claimable(c, now, openings)
        ),
    )


def _claimable(case: Any, now: datetime, openings) -> bool:
    """The Supporting Families claim rules, as far as the case records them."""
    sustained_from = case.closed_at + timedelta(days=183)
    reopened = any(
        family_id == case.family_id and opened_at is not None and opened_at > case.closed_at
        for family_id, opened_at in openings
    )
    return (
        case.needs_count >= 3
        and case.lead_worker_id is not None
        and case.assessed_at is not None
        and case.plan_activated_at is not None
        and bool(case.all_needs_achieved)
        and sustained_from <= now
        and not reopened
    )


def _as_csv(report: PerformanceReport) -> str:
    """One measure a line: `measure,breakdown,value`, for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["measure", "breakdown", "value"])
    for name, value in report.model_dump(mode="json").items():
        if isinstance(value, dict):
            for key, item in value.items():
                writer.writerow([name, key, "" if item is None else item])
        else:
            writer.writerow([name, "", "" if value is None else value])
    return out.getvalue()
