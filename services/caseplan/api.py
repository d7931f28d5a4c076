"""Case plan's HTTP API: routes only; the work is in `commands` and `queries`."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from caseplan import commands, queries, report_page, returns
from caseplan.schemas import (
    ActionSubmission,
    AnnexAList,
    AssessmentDraftView,
    AssessmentRecorded,
    AssessmentSubmission,
    CaseFilter,
    CaseList,
    CaseView,
    ChildSchoolSubmission,
    Chronology,
    ClosureSubmission,
    ConsentNarrowing,
    ConsentSubmission,
    ConsentWithdrawal,
    LegalHoldSubmission,
    LegalHoldView,
    OutcomeSubmission,
    OutsideFourWeeksList,
    OverrideEnding,
    OverrideSubmission,
    PerformanceReport,
    Recorded,
    RetentionDue,
    ReviewSubmission,
    ServiceStartSubmission,
    StepDownSubmission,
    StepUpSubmission,
    SupportingFamiliesClaims,
    TeamMemberRemoval,
    TeamMemberSubmission,
)
from caseplan.settings import CaseplanSettings, current_settings
from hub.auth import Identities
from hub.commands import run_command
from hub.contracts.common import IsoDate
from hub.contracts.dates import authority_date
from hub.contracts.identifiers import Slug
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.retention import RetentionSchedule, current_schedule
from hub.scope import Scope
from hub.service import Runtime, runtime_of

router = APIRouter(prefix="/v1", tags=["cases"])


Settings = Annotated[CaseplanSettings, Depends(current_settings)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Reader = Annotated[Scope, Depends(caller("cases:read"))]


async def partner_directory(runtime: RuntimeDep) -> Identities:
    """The partners of the hub as the identities file names them now."""
    return runtime.tokens.identities.current


Directory = Annotated[Identities, Depends(partner_directory)]
Worker = Annotated[Scope, Depends(caller("cases:write"))]
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
    request: Request,
    runtime: RuntimeDep,
    scope: Annotated[Scope, Depends(caller("chronology:read"))],
    now: Now,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Chronology:
    """Every event about the family from every service, oldest first, a page at a time,
    with `involved`: every organisation, team and professional working with the family.
    Staff limited to localities or teams see a family when one of its cases or
    referrals is theirs; any other family is a 404, as an unknown one.
    """
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.chronology(ctx, family_id, limit, cursor),
        now=now,
    )


# --- reading cases -------------------------------------------------------------------


@router.get(
    "/cases",
    response_model=CaseList,
    responses=problem_responses(401, 403, 422),
    summary="Cases, e.g. those whose review is overdue, or the caller's own",
)
async def list_cases(
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
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
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.case_list(ctx, review, lead_professional, locality, limit),
        now=now,
    )


@router.get(
    "/cases/{case_id}",
    response_model=CaseView,
    responses=problem_responses(401, 403, 404),
    summary="A family's case: assessment, plan, reviews, step-up/down and closure",
)
async def get_case(
    case_id: UUID,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    scope: Reader,
    directory: Directory,
    now: Now,
) -> CaseView:
    """The `ETag` header is the case's version, for `If-Match` on the commands that change it.
    A case outside the caller's localities and teams is a 404, as an unknown one. `team`,
    `consent`, `safeguarding_override` and `schools` show who may be told about the case
    and under what, as they stand now."""
    view, etag = await run_query(
        runtime, request, scope, lambda ctx: queries.case_view(ctx, case_id, directory), now=now
    )
    response.headers["ETag"] = etag
    return view


@router.get(
    "/cases/{case_id}/assessments/draft",
    response_model=AssessmentDraftView,
    responses=problem_responses(401, 403, 404),
    summary="The assessment draft saved so far",
)
async def get_draft(
    case_id: UUID, request: Request, runtime: RuntimeDep, scope: Reader, now: Now
) -> AssessmentDraftView:
    """For those who work the case: its lead professional, their team, their managers."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.assessment_draft(ctx, case_id), now=now
    )


# --- commands ------------------------------------------------------------------------


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
    scope: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """With `complete: false` (the default) the draft is saved, however incomplete, and the
    answer lists what it still lacks (200). With `complete: true` every missing part is
    named in a 422; a complete assessment emits `earlyhelp.assessment.completed.v1` (201).
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.submit_assessment(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
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
    scope: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Needs a completed assessment; `need_id`, when given, must be one of its needs."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.add_action(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


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
    scope: Worker,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The outcome code is the need's Supporting Families headline outcome; a later
    outcome for the same need replaces the earlier one."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.agree_outcome(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


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
    scope: Worker,
    settings: Settings,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Needs an active plan (a panel decision). The next review date is after today and no
    later than the configured maximum (default three months). Emits
    `earlyhelp.plan.reviewed.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.review_plan(
            ctx, case_id, submission, settings.max_review_interval_months
        ),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


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
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Emits `earlyhelp.case.stepped_up.v1`; the case is then held as stepped up: only
    closure is possible."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.step_up(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


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
    scope: Annotated[Scope, Depends(caller("step-downs:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the social care partner may call it. Opens an early help case awaiting
    allocation and emits `earlyhelp.case.stepped_down.v1`, which allocation picks up.
    The same social care reference stepped down twice is a 409."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.step_down(ctx, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


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
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every identified need needs an outcome (achieved or not); `needs_met` needs a
    completed assessment; `other` needs `reason_detail`. Emits `earlyhelp.case.closed.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.close_case(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/service-starts",
    response_model=Recorded,
    status_code=201,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Record that a service of the agreed package actually started",
)
async def record_service_start(
    case_id: UUID,
    submission: ServiceStartSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Anyone who works the case (its lead professional, their team, their managers), once
    per service of the package the panel agreed for this episode (409 `no-package` before a
    panel decision, `service-already-started` the second time; a service not in the package
    is a 422). The 4-week measure counts from the assessment to the first start. Emits
    `earlyhelp.case.service_started.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_service_start(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


# --- the team around the family, consent, overrides, schools ---------------------------

_SHARING = problem_responses(401, 403, 404, 409, 413, 422)


@router.post(
    "/cases/{case_id}/team",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="Add an organisation to the team around the family, with its role on the plan",
    tags=["team around the family"],
)
async def add_team_member(
    case_id: UUID,
    submission: TeamMemberSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    directory: Directory,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The case's lead professional or their manager only; the case must be open.
    `member_id` is a partner's client id or a provider a panel has commissioned (else 422);
    a member already on the team is a 409. Emits `earlyhelp.case.team_member_added.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.add_team_member(ctx, case_id, submission, directory),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/team/{member_id}/removal",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="Take an organisation off the team around the family",
    tags=["team around the family"],
)
async def remove_team_member(
    case_id: UUID,
    member_id: Slug,
    submission: TeamMemberRemoval,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The case's lead professional or their manager only, at any stage of the case. An
    organisation not on the team (a referrer is on it by its referral, not removable) is a
    409. Emits `earlyhelp.case.team_member_removed.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.remove_team_member(ctx, case_id, member_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/consent",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="Record the family's consent for this case episode (it replaces what stands)",
    tags=["consent"],
)
async def record_consent(
    case_id: UUID,
    submission: ConsentSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Anyone who works the case; not on a closed case. Emits
    `earlyhelp.case.consent_recorded.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_consent(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/consent/narrowing",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="The family withdrew consent for some purposes: what still stands",
    tags=["consent"],
)
async def narrow_consent(
    case_id: UUID,
    submission: ConsentNarrowing,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """`purposes` must be fewer of those standing (422 otherwise); no consent standing is a
    409. Emits `earlyhelp.case.consent_narrowed.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.narrow_consent(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/consent/withdrawal",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="The family withdrew all consent for this case",
    tags=["consent"],
)
async def withdraw_consent(
    case_id: UUID,
    submission: ConsentWithdrawal,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """At any stage of the case; no consent standing is a 409. Emits
    `earlyhelp.case.consent_withdrawn.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.withdraw_consent(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/safeguarding-override",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="Record (or renew) a safeguarding override: sharing without consent",
    tags=["consent"],
)
async def record_override(
    case_id: UUID,
    submission: OverrideSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The case's lead professional or their manager decides; `review_date` is after
    today. Emits `earlyhelp.case.safeguarding_override_recorded.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_override(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/safeguarding-override/ending",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="End the safeguarding override before its review date",
    tags=["consent"],
)
async def end_override(
    case_id: UUID,
    submission: OverrideEnding,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The case's lead professional or their manager; no override standing is a 409.
    Emits `earlyhelp.case.safeguarding_override_ended.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.end_override(ctx, case_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


@router.post(
    "/cases/{case_id}/schools",
    response_model=Recorded,
    status_code=201,
    responses=_SHARING,
    summary="Record which school a child of the case attends",
    tags=["team around the family"],
)
async def record_child_school(
    case_id: UUID,
    submission: ChildSchoolSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Worker,
    directory: Directory,
    now: Now,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Anyone who works the case. The child must be a child of the case's family and the
    school a partner of type school (each named in a 422 otherwise). This, or the school
    referring the child itself, is the only way a school becomes a child's school for
    sharing. Emits `earlyhelp.case.child_school_recorded.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_child_school(ctx, case_id, submission, directory),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
        if_match=if_match,
        stale=commands.case_changed(case_id),
    )


# --- performance ---------------------------------------------------------------------

_CSV = "text/csv"
_HTML = "text/html"


@router.get(
    "/reports/performance",
    response_model=PerformanceReport,
    responses={
        **problem_responses(401, 403, 422),
        200: {"content": {"application/json": {}, _CSV: {}, _HTML: {}}},
    },
    summary="How fast and how well the service works: JSON, CSV, or a printable page with charts",
    tags=["reports"],
)
async def performance(
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
    settings: Settings,
    now: Now,
    locality: Annotated[str | None, Query(max_length=100)] = None,
    # ISO dates only: `?to=0` was read as 1 January 1970.
    from_: Annotated[IsoDate | None, Query(alias="from")] = None,
    to: Annotated[IsoDate | None, Query()] = None,
) -> Any:
    """Managers only (role team_manager). Every measure counts what happened in the period
    (`from` and `to` inclusive, either may be left open) in the locality, if given. A
    manager of some localities reports on those only (on their one locality by default).
    `Accept: text/html` gives a printable page with charts of the measures month by month
    (an open period is then the twelve months to today)."""
    accept = request.headers.get("accept", "")
    rules = settings.claim_rules()
    if _HTML in accept:
        report, months = await run_query(
            runtime,
            request,
            scope,
            lambda ctx: queries.performance_by_month(ctx, locality, from_, to, rules),
            now=now,
        )
        page = await run_in_threadpool(report_page.render, report, months, now)
        return HTMLResponse(page)
    report = await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.performance(ctx, locality, from_, to, rules),
        now=now,
    )
    if _CSV in accept:
        return Response(queries.as_csv(report), media_type=_CSV)
    return report


@router.get(
    "/reports/performance/outside-four-weeks",
    response_model=OutsideFourWeeksList,
    responses=problem_responses(401, 403, 422),
    summary="The cases outside the 4-week measure: late service starts and families waiting",
    tags=["reports"],
)
async def outside_four_weeks(
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
    now: Now,
    locality: Annotated[str | None, Query(max_length=100)] = None,
    from_: Annotated[IsoDate | None, Query(alias="from")] = None,
    to: Annotated[IsoDate | None, Query()] = None,
) -> OutsideFourWeeksList:
    """Managers only, on their localities as for the performance report. The cases whose
    first service started in the period more than 28 days after the assessment, and the
    open cases waiting longer than that now with no service started, the longest first."""
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.outside_four_weeks(ctx, locality, from_, to),
        now=now,
    )


# --- returns: Ofsted Annex A (issue 21) ----------------------------------------------

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get(
    "/returns/annex-a/early-help",
    response_model=AnnexAList,
    responses={
        **problem_responses(401, 403, 422),
        200: {"content": {"application/json": {}, _CSV: {}, _XLSX: {}}},
    },
    summary="Ofsted Annex A list 2 (early help) as at a date: JSON, CSV or an XLSX workbook",
    tags=["returns"],
)
async def annex_a_early_help(
    request: Request,
    runtime: RuntimeDep,
    scope: Annotated[Scope, Depends(caller("returns:read", kind="staff"))],
    now: Now,
    as_at: Annotated[IsoDate, Query(description="The inspection date; not after today.")],
    months: Annotated[int, Query(ge=1, le=24, description="The look-back period.")] = 6,
) -> Any:
    """Information governance and managers (`returns:read`); a manager of some localities
    gets their localities' children only. Every early help assessment completed in the
    `months` before `as_at` and every episode open on it, one row per child, from what was
    recorded by the end of `as_at`: the same list the hub would have given that day. Send
    `Accept: text/csv` for CSV, or the XLSX media type for a workbook with the template's
    sheet (`List 2`) and headings. Every child listed is written to the audit log."""
    rows = await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.annex_a_early_help(ctx, as_at, months),
        now=now,
    )
    accept = request.headers.get("accept", "")
    name = f"annex-a-list-2-{as_at.isoformat()}"
    if _XLSX in accept:
        return Response(
            returns.as_xlsx(rows),
            media_type=_XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    if _CSV in accept:
        return Response(
            returns.as_csv(rows),
            media_type=_CSV,
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return AnnexAList(
        as_at=as_at,
        months=months,
        period_from=returns.look_back_from(as_at, months),
        columns=list(returns.COLUMNS),
        rows=[dict(zip(returns.COLUMNS, row.values(), strict=True)) for row in rows],
    )


@router.get(
    "/returns/supporting-families",
    response_model=SupportingFamiliesClaims,
    responses={
        **problem_responses(401, 403, 422),
        200: {"content": {"application/json": {}, _CSV: {}}},
    },
    summary="Supporting Families: each family's claim status, and the claim file (CSV)",
    tags=["returns"],
)
async def supporting_families(
    request: Request,
    runtime: RuntimeDep,
    scope: Annotated[Scope, Depends(caller("returns:read", kind="staff"))],
    settings: Settings,
    now: Now,
    status: Annotated[
        str | None,
        Query(
            pattern="^(eligible|evidence_due|claimable|not_claimable)$",
            description="Only the episodes in this status (the claim file: `claimable`).",
        ),
    ] = None,
) -> Any:
    """Information governance and managers (`returns:read`), a manager of some localities
    for those localities' families. Every episode that met the claim rules at its start,
    with its status today under the rules the authority configures
    (`EARLYHELP_CASEPLAN_SF_*`). `Accept: text/csv` gives the claim file: one line per
    family episode with the facts that evidence each rule. Every family listed is
    written to the audit log."""
    rules = settings.claim_rules()
    today = authority_date(now)
    listed = await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.supporting_families(ctx, rules, today, status),
        now=now,
    )
    if _CSV in request.headers.get("accept", ""):
        return Response(
            queries.claim_file(listed),
            media_type=_CSV,
            headers={
                "Content-Disposition": f'attachment; filename="supporting-families-{today}.csv"'
            },
        )
    return SupportingFamiliesClaims(
        as_at=today,
        min_headline_needs=rules.min_headline_needs,
        sustain_months=rules.sustain_months,
        claims=[
            {
                "family_id": claim.family_id,
                "case_id": claim.case_id,
                "status": claim.status.value,
                "reasons": list(claim.reasons),
                "headline_needs": sorted(facts.headline_needs),
                "assessment_completed_at": facts.assessed_at,
                "plan_agreed_at": facts.plan_agreed_at,
                "closed_at": facts.closed_at,
                "closure_reason": facts.closure_reason,
                "sustained_on": claim.sustained_on,
            }
            for claim, facts in listed
        ],
    )


# --- retention and legal holds (issue 16) ---------------------------------------------


async def retention_schedule(runtime: RuntimeDep) -> RetentionSchedule:
    """The authority's retention schedule (EARLYHELP_RETENTION_SCHEDULE_FILE)."""
    return current_schedule(runtime.settings.retention_schedule_file)


Schedule = Annotated[RetentionSchedule, Depends(retention_schedule)]
Governance = Annotated[Scope, Depends(caller("legal-holds:write", kind="staff"))]


@router.get(
    "/retention/due",
    response_model=RetentionDue,
    responses=problem_responses(401, 403),
    summary="What the next retention run would dispose of, and what a legal hold keeps",
    tags=["retention"],
)
async def retention_due(
    request: Request,
    runtime: RuntimeDep,
    scope: Annotated[Scope, Depends(caller("retention:read", kind="staff"))],
    schedule: Schedule,
    now: Now,
) -> RetentionDue:
    """Information governance only. Families whose case records have reached the end of
    their retention period today (config/retention.yaml), and every family under legal
    hold. Case records are reported, not yet disposed of, until erasure exists."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.retention_due(ctx, schedule), now=now
    )


@router.put(
    "/families/{family_id}/legal-hold",
    response_model=LegalHoldView,
    responses=problem_responses(401, 403, 413, 422),
    summary="Keep a family's records from disposal under the retention schedule",
    tags=["retention"],
)
async def place_legal_hold(
    family_id: UUID,
    submission: LegalHoldSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Governance,
    now: Now,
) -> Response:
    """Information governance only. Until lifted, the nightly retention run disposes of
    none of the family's case records nor the audit of who read them. Placing it again
    replaces the reason."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.place_legal_hold(ctx, family_id, submission),
        now=now,
        payload=submission,
    )


@router.delete(
    "/families/{family_id}/legal-hold",
    status_code=204,
    responses=problem_responses(401, 403, 404),
    summary="Lift a family's legal hold",
    tags=["retention"],
)
async def lift_legal_hold(
    family_id: UUID, request: Request, runtime: RuntimeDep, scope: Governance, now: Now
) -> Response:
    """Information governance only. The family's records fall under the schedule again."""
    return await run_command(
        runtime, request, scope, lambda ctx: commands.lift_legal_hold(ctx, family_id), now=now
    )
