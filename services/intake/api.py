"""The front door's HTTP API: thin, it maps requests to commands and read models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.commands import CommandResult, run_command
from hub.contracts.base import EventData
from hub.contracts.codes import PartnerOrganisationType, Urgency
from hub.contracts.common import Child, HouseholdMember, Referrer
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.pagination import InvalidCursor, after_position, decode_cursor, encode_cursor
from hub.http.problems import FieldError, Problem, problem_responses, problem_type
from hub.service import Runtime, UnitOfWork, runtime_of
from intake import domain
from intake.projections import URGENCY_RANK, possible_matches, referrals
from intake.records import open_case_of, records_for_children, records_for_family
from intake.schemas import (
    AllocationOutcome,
    LeadProfessional,
    MatchDecision,
    Matching,
    MatchingRecorded,
    PoliceNotification,
    PossibleMatch,
    QueueItem,
    QueueStatus,
    ReferralAccepted,
    ReferralProgress,
    ReferralQueue,
    ReferralSubmission,
    ReferralView,
    TriageDecision,
    TriageOutcome,
    TriageRecorded,
    UnlinkRequest,
    WithdrawalOutcome,
    WithdrawalRecorded,
    WithdrawalRequest,
)
from intake.settings import IntakeSettings, current_settings

router = APIRouter(prefix="/v1", tags=["referrals"])


Settings = Annotated[IntakeSettings, Depends(current_settings)]


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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:write"))],
    settings: Settings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accepts the referral for triage; the front door decides the level of need and route.

    The referring organisation is the one the bearer token belongs to. Each child is
    matched to the people the hub already knows (NHS number, then UPN, then name, date
    of birth and postcode), so `family_id` may be a family the hub knew before. A
    low-graded police notification is held for information (status
    `held_for_information`) until enough accumulate for the family to be triaged.
    """
    referrer = _referrer_of(submission, caller)

    def receive(uow: UnitOfWork) -> CommandResult:
        uow.serialise_appends()
        received_at = datetime.now(UTC)
        records = records_for_children(
            uow.conn, submission.children, received_at, settings.escalation_window_months
        )
        command = _command_from(submission, referrer, received_at, records, settings)
        stream = domain.stream_id(command.referral_id)
        received, *_ = events = domain.receive(None, command)
        uow.append(stream, 0, events, actor=caller.subject)
        accepted = ReferralAccepted(
            referral_id=command.referral_id,
            family_id=received.family_id,
            status=(
                domain.ReferralStatus.HELD
                if received.held_for_information
                else domain.ReferralStatus.RECEIVED
            ),
            received_at=command.received_at,
        )
        return CommandResult(202, accepted, {"Location": f"/v1/referrals/{command.referral_id}"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=submission,
        command=receive,
    )


@router.get(
    "/referrals/{referral_id}",
    response_model=ReferralView,
    responses=problem_responses(401, 403, 404),
    summary="What happened to a referral",
)
async def get_referral(
    referral_id: UUID,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:read"))],
) -> ReferralView:
    """Where the referral is: received; triaged, with the level of need, route, locality
    and case; allocated, with the lead professional's contact; or withdrawn.

    A partner sees its own referrals only; front-door staff see every referral.
    """
    row = await runtime.read(
        lambda conn: conn.execute(
            select(referrals).where(referrals.c.referral_id == str(referral_id))
        ).first()
    )
    # Another partner's referral is as unknown to the caller as one that does not exist.
    if row is None or (
        caller.kind == "partner" and row.referrer_organisation_id != caller.organisation_id
    ):
        raise Problem.not_found(f"No referral {referral_id}.")
    matching = None
    if caller.kind == "staff":
        matching = await runtime.read(lambda conn: _matching_of(conn, row))
    await record_read(runtime, caller, "referral", str(referral_id))
    return _view_of(row, matching)


@router.get(
    "/referrals",
    response_model=ReferralQueue,
    responses=problem_responses(401, 403),
    summary="The triage queue, and referrals by status",
)
async def list_referrals(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:read"))],
    settings: Settings,
    now: Now,
    status: Annotated[
        QueueStatus, Query(description="Which referrals: the queue is `awaiting_triage`.")
    ] = QueueStatus.AWAITING_TRIAGE,
    limit: Annotated[int, Query(ge=1, le=200, description="Referrals per page.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=300, description="`next_cursor` of the previous page.")
    ] = None,
) -> ReferralQueue:
    """Most urgent first (immediate, urgent, routine), then oldest first, a page at a time.

    Each referral shows its decision deadline (received_at plus the deadline configured
    for its urgency) and whether it is overdue. Front-door staff see every referral;
    a partner sees only the referrals it made.
    """
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
        table.c.escalated_notices,
        table.c.pending_matches,
    ).where(table.c.status == _STORED_STATUS[status])
    if caller.kind == "partner":
        query = query.where(table.c.referrer_organisation_id == caller.organisation_id)
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
    rows = await runtime.read(lambda conn: conn.execute(query.limit(limit + 1)).all())
    await record_read(runtime, caller, "referral_list", status.value)
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return ReferralQueue(
        status=status,
        items=[_queue_item(row, settings, now, staff=caller.kind == "staff") for row in page],
        next_cursor=_encode_cursor(status, last) if last is not None else None,
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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:triage"))],
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Front-door staff decide the level of need and the route, and say why.

    The early_help route opens a case in the given locality: `triage.case_id` is
    its id. A referral is triaged once: a second decision, or one on a withdrawn
    referral, is a 409.
    """
    if decision.level_of_need not in settings.levels_of_need:
        allowed = ", ".join(level.value for level in settings.levels_of_need)
        raise Problem.unprocessable(
            "This level of need is not on the authority's framework.",
            title="Invalid request",
            errors=[
                FieldError(
                    field="level_of_need",
                    message=f"must be one of the levels this authority uses: {allowed}",
                    code="level_of_need_not_in_framework",
                )
            ],
        )
    command = domain.TriageReferral(
        referral_id=referral_id,
        level_of_need=decision.level_of_need,
        route=decision.route,
        locality=decision.locality,
        rationale=decision.rationale,
        decided_by=caller.subject,
        decided_at=now,
        new_case_id=uuid4(),
    )

    def triage(uow: UnitOfWork) -> CommandResult:
        def decide(current: domain.Referral | None) -> list[EventData]:
            open_case = open_case_of(uow.conn, current.family_id) if current else None
            return domain.triage(current, replace(command, open_case_id=open_case))

        uow.serialise_appends()
        [event] = _decide(uow, referral_id, caller, decide)
        recorded = TriageRecorded(
            referral_id=event.referral_id,
            family_id=event.family_id,
            status=domain.ReferralStatus.TRIAGED,
            triage=TriageOutcome(
                level_of_need=event.level_of_need,
                route=event.route,
                locality=event.locality,
                case_id=event.case_id,
                joins_open_case=event.joins_open_case,
                decided_at=event.decided_at,
            ),
        )
        return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=decision,
        command=triage,
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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Only the organisation that made the referral may withdraw it, and only until the
    front door has triaged it (then it is a 409: the decision stands).
    """
    if caller.kind != "partner" or caller.organisation_id is None:
        raise Problem.forbidden("Only the referring partner can withdraw a referral.")
    command = domain.WithdrawReferral(
        referral_id=referral_id,
        organisation_id=caller.organisation_id,
        withdrawn_by=caller.subject,
        reason=withdrawal.reason,
        withdrawn_at=now,
    )

    def withdraw(uow: UnitOfWork) -> CommandResult:
        [event] = _decide(
            uow, referral_id, caller, lambda current: domain.withdraw(current, command)
        )
        recorded = WithdrawalRecorded(
            referral_id=event.referral_id,
            family_id=event.family_id,
            status=domain.ReferralStatus.WITHDRAWN,
            withdrawal=WithdrawalOutcome(withdrawn_at=event.withdrawn_at, reason=event.reason),
        )
        return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=withdrawal,
        command=withdraw,
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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:triage"))],
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The referral joins the known person's family, and that family's open case if it
    has one (or its case closed within the re-referral window is recorded). Only before
    triage; a wrong confirmation is undone by unlinking.
    """

    def confirm(uow: UnitOfWork) -> CommandResult:
        def decide(current: domain.Referral | None) -> list[EventData]:
            pending = current.pending_matches.get(match_id) if current else None
            records = (
                records_for_family(uow.conn, pending.candidate_family_id)
                if pending
                else domain.FrontDoorRecords()
            )
            command = domain.ConfirmMatch(
                referral_id=referral_id,
                match_id=match_id,
                confirmed_by=caller.subject,
                confirmed_at=now,
                records=records,
                rules=settings.front_door_rules(),
            )
            return domain.confirm_match(current, command)

        _decide(uow, referral_id, caller, decide)
        return _matching_recorded(uow, referral_id)

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=None,
        command=confirm,
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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:triage"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The referral keeps its own family; the rejection and its reason stay on record."""
    command = domain.RejectMatch(
        referral_id=referral_id,
        match_id=match_id,
        reason=decision.reason,
        rejected_by=caller.subject,
        rejected_at=now,
    )

    def reject(uow: UnitOfWork) -> CommandResult:
        _decide(uow, referral_id, caller, lambda current: domain.reject_match(current, command))
        return _matching_recorded(uow, referral_id)

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=decision,
        command=reject,
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
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("referrals:triage"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """For a referral matched to a known family, automatically or by confirmation: its
    people get new ids in a new family, and the family it left keeps everything else.
    Only before triage (afterwards it is a 409).
    """
    command = domain.UnlinkReferral(
        referral_id=referral_id,
        new_family_id=uuid4(),
        reason=unlinking.reason,
        unlinked_by=caller.subject,
        unlinked_at=now,
    )

    def unlink(uow: UnitOfWork) -> CommandResult:
        _decide(uow, referral_id, caller, lambda current: domain.unlink(current, command))
        return _matching_recorded(uow, referral_id)

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=unlinking,
        command=unlink,
    )


def _matching_recorded(uow: UnitOfWork, referral_id: UUID) -> CommandResult:
    row = uow.conn.execute(
        select(referrals).where(referrals.c.referral_id == str(referral_id))
    ).one()
    recorded = MatchingRecorded(
        referral_id=referral_id, family_id=row.family_id, matching=_matching_of(uow.conn, row)
    )
    return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})


def _decide(
    uow: UnitOfWork,
    referral_id: UUID,
    caller: Principal,
    decide: Callable[[domain.Referral | None], list[EventData]],
) -> list[Any]:
    """Load the referral's stream, decide, and append after the version decided on.

    A concurrent decision on the same referral moves the stream on first: the
    append then fails with ConcurrencyConflict, which run_command answers 409.
    """
    stream = domain.stream_id(referral_id)
    current = domain.replay(recorded.decode() for recorded in uow.read_stream(stream))
    try:
        events = decide(current)
    except domain.ReferralNotFound as exc:
        raise Problem.not_found(f"No referral {referral_id}.") from exc
    except domain.MatchNotFound as exc:
        raise Problem.not_found(
            f"No possible match {exc} awaiting a decision on referral {referral_id}."
        ) from exc
    except domain.MatchesUnresolved as exc:
        raise Problem.conflict(
            str(exc), title="Possible matches to resolve", type=problem_type("matches-unresolved")
        ) from exc
    except domain.NotMatched as exc:
        raise Problem.conflict(
            str(exc), title="Not matched", type=problem_type("referral-not-matched")
        ) from exc
    except domain.InvalidTriage as exc:
        raise Problem.unprocessable(
            "The decision is not consistent.",
            title="Invalid request",
            errors=[FieldError(field=exc.field, message=exc.message, code="triage_rule")],
        ) from exc
    except domain.AlreadyTriaged as exc:
        raise Problem.conflict(
            str(exc), title="Already triaged", type=problem_type("referral-already-triaged")
        ) from exc
    except domain.AlreadyWithdrawn as exc:
        raise Problem.conflict(
            str(exc), title="Withdrawn", type=problem_type("referral-withdrawn")
        ) from exc
    assert current is not None  # a decision on nothing raised ReferralNotFound
    uow.append(stream, current.version, events, actor=caller.subject)
    return events


# The read model keeps the referral's own status; the queue's name for "received" differs.
_STORED_STATUS = {
    QueueStatus.AWAITING_TRIAGE: domain.ReferralStatus.RECEIVED.value,
    QueueStatus.HELD_FOR_INFORMATION: domain.ReferralStatus.HELD.value,
    QueueStatus.TRIAGED: domain.ReferralStatus.TRIAGED.value,
    QueueStatus.WITHDRAWN: domain.ReferralStatus.WITHDRAWN.value,
}


def _progress(row: Any) -> ReferralProgress:
    if row.status == domain.ReferralStatus.TRIAGED and row.allocated_at is not None:
        return ReferralProgress.ALLOCATED
    return ReferralProgress(row.status)


def _queue_item(row: Any, settings: IntakeSettings, now: datetime, *, staff: bool) -> QueueItem:
    deadline = row.received_at + settings.decision_deadline(Urgency(row.urgency))
    # Still awaiting a decision: overdue once the deadline is past; otherwise,
    # whether the decision (or the withdrawal) came after it. A notification held
    # for information awaits nothing.
    held = row.status == domain.ReferralStatus.HELD and row.decided_at is None
    ended = row.decided_at or row.withdrawn_at or (deadline if held else now)
    return QueueItem(
        referral_id=row.referral_id,
        family_id=row.family_id,
        status=_progress(row),
        urgency=row.urgency,
        partner_reference=row.partner_reference,
        received_at=row.received_at,
        age_seconds=max(0, int((now - row.received_at).total_seconds())),
        decision_deadline=deadline,
        overdue=ended > deadline,
        escalating_concern=row.escalated_notices > 0,
        unresolved_matches=row.pending_matches if staff else None,
    )


def _encode_cursor(status: QueueStatus, row: Any) -> str:
    return encode_cursor(status.value, row.urgency_rank, row.received_at, row.referral_id)


def _decode_cursor(cursor: str, status: QueueStatus) -> tuple[int, datetime, str]:
    invalid = Problem.unprocessable(
        "The cursor is not one this API gave out.",
        errors=[FieldError(field="query.cursor", message="not a valid cursor", code="cursor")],
    )
    try:
        listed, rank, received, after_id = decode_cursor(cursor)
    except InvalidCursor as exc:
        raise invalid from exc
    if rank not in URGENCY_RANK.values():
        raise invalid
    if listed != status.value:
        raise Problem.unprocessable(
            "The cursor belongs to another status.",
            errors=[
                FieldError(
                    field="query.cursor",
                    message="this cursor continues another status's list",
                    code="cursor_mismatch",
                )
            ],
        )
    return rank, received, after_id


def _matching_of(conn: Any, row: Any) -> Matching:
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


def _view_of(row: Any, matching: Matching | None) -> ReferralView:
    triage = (
        TriageOutcome(
            level_of_need=row.level_of_need,
            route=row.route,
            locality=row.locality,
            case_id=row.case_id,
            joins_open_case=row.joins_open_case,
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
    return ReferralView(
        referral_id=row.referral_id,
        family_id=row.family_id,
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
        matching=matching,
        triage=triage,
        allocation=allocation,
        withdrawal=withdrawal,
    )


def _referrer_of(submission: ReferralSubmission, caller: Principal) -> Referrer | None:
    """The referrer as submitted, with the organisation taken from the token."""
    referrer = submission.referrer
    if referrer is None or caller.kind != "partner":
        return referrer
    claimed = referrer.organisation_id
    if claimed is not None and claimed != caller.organisation_id:
        raise Problem.unprocessable(
            "The referring organisation is the one the bearer token belongs to.",
            errors=[
                FieldError(
                    field="referrer.organisation_id",
                    message=f"must be {caller.organisation_id} (or left out)",
                    code="organisation_mismatch",
                )
            ],
        )
    return referrer.model_copy(
        update={
            "organisation_id": caller.organisation_id,
            "organisation_type": PartnerOrganisationType(caller.organisation_type),
            "organisation_name": caller.name,
        }
    )


def _command_from(
    submission: ReferralSubmission,
    referrer: Referrer | None,
    received_at: datetime,
    records: domain.FrontDoorRecords,
    settings: IntakeSettings,
) -> domain.ReceiveReferral:
    return domain.ReceiveReferral(
        referral_id=uuid4(),
        family_id=uuid4(),
        received_at=received_at,
        referral_source=submission.referral_source,
        referrer=referrer,
        partner_reference=submission.partner_reference,
        urgency=submission.urgency,
        children=tuple(
            Child(person_id=uuid4(), **child.model_dump()) for child in submission.children
        ),
        household_members=tuple(
            HouseholdMember(person_id=uuid4(), **member.model_dump())
            for member in submission.household_members
        ),
        concerns=submission.concerns,
        consent=submission.consent,
        safeguarding_override=submission.safeguarding_override,
        police_grade=submission.police_grade,
        records=records,
        rules=settings.front_door_rules(),
    )
