"""The front door's HTTP API: routes only; the work is in `commands` and `queries`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from hub.commands import run_command
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.scope import Scope
from hub.service import Runtime, runtime_of
from intake import commands, queries
from intake.consultations import ConsultationStatus
from intake.schemas import (
    AdviceSubmission,
    ConsultationAccepted,
    ConsultationList,
    ConsultationSubmission,
    ConsultationView,
    MatchDecision,
    MatchingRecorded,
    PartnerReferralQueue,
    PartnerReferralView,
    QueueStatus,
    ReferralAccepted,
    ReferralQueue,
    ReferralSubmission,
    ReferralView,
    TriageDecision,
    TriageRecorded,
    UnlinkRequest,
    WithdrawalRecorded,
    WithdrawalRequest,
)
from intake.settings import IntakeSettings, current_settings

router = APIRouter(prefix="/v1", tags=["referrals"])


Settings = Annotated[IntakeSettings, Depends(current_settings)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Referrer = Annotated[Scope, Depends(caller("referrals:write"))]
Reader = Annotated[Scope, Depends(caller("referrals:read"))]
FrontDoor = Annotated[Scope, Depends(caller("referrals:triage"))]


@router.post(
    "/referrals",
    status_code=202,
    response_model=ReferralAccepted,
    responses=problem_responses(401, 403, 409, 413, 422),
    summary="Refer a child or family to early help",
)
async def submit_referral(
    submission: ReferralSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accepts the referral for triage; the front door decides the level of need and route.

    The referring organisation is the one the bearer token belongs to. Each child is
    matched to the people the hub already knows (NHS number, then UPN, then name, date
    of birth and postcode); which family that is stays with the front door. A
    low-graded police notification is held for information (status
    `held_for_information`) until enough accumulate for the family to be triaged.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.receive_referral(ctx, submission, settings),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/referrals/{referral_id}",
    response_model=ReferralView | PartnerReferralView,
    responses=problem_responses(401, 403, 404),
    summary="What happened to a referral",
)
async def get_referral(
    referral_id: UUID, request: Request, runtime: RuntimeDep, scope: Reader, now: Now
) -> ReferralView | PartnerReferralView:
    """Where the referral is: received; triaged, with the level of need, route, locality
    and case; allocated, with the lead professional's contact; or withdrawn.

    A partner sees its own referrals only, and nothing about the family beyond them
    (`PartnerReferralView`: no family id, no word of an open case it joined); front-door
    staff see every referral with its family and matching (`ReferralView`).
    """
    return await run_query(
        runtime, request, scope, lambda ctx: queries.referral(ctx, referral_id), now=now
    )


@router.get(
    "/referrals",
    response_model=ReferralQueue | PartnerReferralQueue,
    responses=problem_responses(401, 403),
    summary="The triage queue, and referrals by status",
)
async def list_referrals(
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
    settings: Settings,
    now: Now,
    status: Annotated[
        QueueStatus, Query(description="Which referrals: the queue is `awaiting_triage`.")
    ] = QueueStatus.AWAITING_TRIAGE,
    limit: Annotated[int, Query(ge=1, le=200, description="Referrals per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=300, description="`next_cursor` of the previous page.")
    ] = None,
) -> ReferralQueue | PartnerReferralQueue:
    """Most urgent first (immediate, urgent, routine), then oldest first, a page at a time.

    Each referral shows its decision deadline (received_at plus the deadline configured
    for its urgency) and whether it is overdue. Front-door staff see every referral, with
    its family (`ReferralQueue`); a partner sees only the referrals it made, without
    family ids (`PartnerReferralQueue`).
    """
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.referral_queue(ctx, settings, status, limit, cursor),
        now=now,
    )


@router.post(
    "/referrals/{referral_id}/triage",
    response_model=TriageRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Record the front door's decision on a referral",
)
async def triage_referral(
    referral_id: UUID,
    decision: TriageDecision,
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Front-door staff decide the level of need and the route, and say why.

    The early_help route opens a case in the given locality: `triage.case_id` is
    its id. A referral is triaged once: a second decision, or one on a withdrawn
    referral, is a 409.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.triage(ctx, referral_id, decision, settings),
        now=now,
        payload=decision,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/referrals/{referral_id}/withdrawal",
    response_model=WithdrawalRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Withdraw a referral before it is triaged",
)
async def withdraw_referral(
    referral_id: UUID,
    withdrawal: WithdrawalRequest,
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the organisation that made the referral may withdraw it, and only until the
    front door has triaged it (then it is a 409: the decision stands).
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.withdraw(ctx, referral_id, withdrawal),
        now=now,
        payload=withdrawal,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/referrals/{referral_id}/matches/{match_id}/confirmation",
    response_model=MatchingRecorded,
    responses=problem_responses(401, 403, 404, 409, 413),
    summary="Confirm a possible match: the child is someone the hub knew",
)
async def confirm_match(
    referral_id: UUID,
    match_id: UUID,
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The referral joins the known person's family, and that family's open case if it
    has one (or its case closed within the re-referral window is recorded). Only before
    triage; a wrong confirmation is undone by unlinking.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.confirm_match(ctx, referral_id, match_id, settings),
        now=now,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/referrals/{referral_id}/matches/{match_id}/rejection",
    response_model=MatchingRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Reject a possible match: the child is someone else",
)
async def reject_match(
    referral_id: UUID,
    match_id: UUID,
    decision: MatchDecision,
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The referral keeps its own family; the rejection and its reason stay on record."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.reject_match(ctx, referral_id, match_id, decision),
        now=now,
        payload=decision,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/referrals/{referral_id}/unlinking",
    response_model=MatchingRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Undo a wrong match: take the referral out of the family it was joined to",
)
async def unlink_referral(
    referral_id: UUID,
    unlinking: UnlinkRequest,
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """For a referral matched to a known family, automatically or by confirmation: its
    people get new ids in a new family, and the family it left keeps everything else.
    Only before triage (afterwards it is a 409).
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.unlink(ctx, referral_id, unlinking),
        now=now,
        payload=unlinking,
        idempotency_key=idempotency_key,
    )


# --- consultations: contacts that are not referrals (issue 21) ----------------------------


@router.post(
    "/consultations",
    status_code=201,
    response_model=ConsultationAccepted,
    responses=problem_responses(401, 403, 413, 422),
    summary="Ask the front door for advice without making a referral",
    tags=["consultations"],
)
async def request_consultation(
    submission: ConsultationSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A partner's practitioner asks about a child or family, naming the children or not
    (`children` empty: anonymous). Nothing is matched to the families the hub knows and no
    case is opened; front-door staff record their advice, which the practitioner reads at
    `GET /v1/consultations/{id}`. Emits `earlyhelp.consultation.requested.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.request_consultation(ctx, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/consultations",
    response_model=ConsultationList,
    responses=problem_responses(401, 403, 422),
    summary="The front door's consultations awaiting advice (or advised, or referred)",
    tags=["consultations"],
)
async def list_consultations(
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    now: Now,
    status: ConsultationStatus = ConsultationStatus.AWAITING_ADVICE,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConsultationList:
    """Front-door staff only; oldest first."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.consultation_list(ctx, status, limit), now=now
    )


@router.get(
    "/consultations/{consultation_id}",
    response_model=ConsultationView,
    responses=problem_responses(401, 403, 404),
    summary="A consultation and the advice the front door gave",
    tags=["consultations"],
)
async def get_consultation(
    consultation_id: UUID, request: Request, runtime: RuntimeDep, scope: Reader, now: Now
) -> ConsultationView:
    """The practitioner's organisation sees its own consultations (another's is a 404);
    front-door staff see every one, with who advised."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.consultation(ctx, consultation_id), now=now
    )


@router.post(
    "/consultations/{consultation_id}/advice",
    status_code=201,
    response_model=ConsultationView,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Record the front door's advice on a consultation",
    tags=["consultations"],
)
async def record_advice(
    consultation_id: UUID,
    submission: AdviceSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: FrontDoor,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Front-door staff, once per consultation (409 `consultation-advised` the second
    time). `outcome`: `advice_given`, `signposted` or `refer`. Emits
    `earlyhelp.consultation.advice_recorded.v1`."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_advice(ctx, consultation_id, submission),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/consultations/{consultation_id}/referral",
    status_code=202,
    response_model=ReferralAccepted,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Refer the family, as the front door advised: the consultation becomes a referral",
    tags=["consultations"],
)
async def refer_consultation(
    consultation_id: UUID,
    submission: ReferralSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The organisation that asked, after advice `refer` (409
    `consultation-not-advised-to-refer` otherwise), once (409 `consultation-referred`).
    The body is a referral, received exactly as `POST /v1/referrals` receives one; the
    consultation keeps the referral's id (`referral_id`), and
    `earlyhelp.consultation.referred.v1` links the two."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.refer_consultation(ctx, consultation_id, submission, settings),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )
