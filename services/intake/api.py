"""The front door's HTTP API: thin, it maps requests to commands and read models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, Request, Response
from sqlalchemy import select

from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.commands import CommandResult, run_command
from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.common import Child, HouseholdMember, Referrer
from hub.http.problems import FieldError, Problem, problem_responses
from hub.idempotency import IDEMPOTENCY_HEADER
from hub.service import Runtime, runtime_of
from intake import domain
from intake.projections import referrals
from intake.schemas import ReferralAccepted, ReferralSubmission, ReferralView

router = APIRouter(prefix="/v1", tags=["referrals"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="Repeat a POST safely: the same key and body return the first response.",
    ),
]


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
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accepts the referral for triage; the front door decides the level of need and route.

    The referring organisation is the one the bearer token belongs to.
    """
    referrer = _referrer_of(submission, caller)

    def receive(uow) -> CommandResult:
        command = _command_from(submission, referrer)
        stream = domain.stream_id(command.referral_id)
        events = domain.receive(None, command)
        uow.append(stream, 0, events, actor=caller.subject)
        accepted = ReferralAccepted(
            referral_id=command.referral_id,
            family_id=command.family_id,
            status=domain.ReferralStatus.RECEIVED,
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
    """A partner sees its own referrals only; front-door staff see every referral."""
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
    await record_read(runtime, caller, "referral", str(referral_id))
    return ReferralView.model_validate(row, from_attributes=True)


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
    submission: ReferralSubmission, referrer: Referrer | None
) -> domain.ReceiveReferral:
    return domain.ReceiveReferral(
        referral_id=uuid4(),
        family_id=uuid4(),
        received_at=datetime.now(UTC),
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
    )
