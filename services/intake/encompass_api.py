"""Operation Encompass over HTTP: police notifications in, schools' acknowledgements, and
the front door's queue of notices to act on. Routes only; the work is in `commands`
and `queries`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response

from hub.commands import run_command
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.scope import Scope
from hub.service import Runtime, runtime_of
from intake import commands, queries
from intake.schemas import (
    FrontDoorNoticeQueue,
    NoticeAcknowledged,
    PoliceNotificationAccepted,
    PoliceNotificationSubmission,
)
from intake.settings import IntakeSettings, current_settings

router = APIRouter(prefix="/v1", tags=["operation encompass"])

Settings = Annotated[IntakeSettings, Depends(current_settings)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Referrer = Annotated[Scope, Depends(caller("referrals:write"))]
Reader = Annotated[Scope, Depends(caller("referrals:read"))]
FrontDoor = Annotated[Scope, Depends(caller("referrals:triage"))]


@router.post(
    "/police-notifications",
    status_code=202,
    response_model=PoliceNotificationAccepted,
    responses=problem_responses(401, 403, 409, 413, 422),
    summary="Notify an incident police attended where children live or were present",
)
async def notify_incident(
    submission: PoliceNotificationSubmission,
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """For police forces only. The notification is a police referral: held on the
    family's record as a low one (cumulative concern) unless `referral_requested`, then
    triaged at its grade. For a domestic abuse incident each child gets an Operation
    Encompass notice to their school's designated safeguarding lead, due before the
    next school day starts (`notices`, in the order the children were given).
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.receive_police_notification(ctx, submission, settings),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/encompass-notices/{notice_id}/acknowledgement",
    response_model=NoticeAcknowledged,
    responses=problem_responses(401, 403, 404, 409),
    summary="A school acknowledges an Operation Encompass notice (or the front door for it)",
)
async def acknowledge_notice(
    notice_id: UUID,
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """For the notice's own school (any other school's is a 404); or for front-door staff,
    who record that they told the school's designated safeguarding lead by telephone (a
    notice with no known school, or one its school left unacknowledged). Acknowledging
    again answers with the first acknowledgement."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.acknowledge_notice(ctx, notice_id),
        now=now,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/encompass-notices",
    response_model=FrontDoorNoticeQueue,
    responses=problem_responses(401, 403),
    summary="Operation Encompass notices the front door must act on",
)
async def encompass_queue(
    request: Request, runtime: RuntimeDep, scope: FrontDoor, now: Now
) -> FrontDoorNoticeQueue:
    """Unacknowledged notices for a child with no known school (from the moment they
    arrive) or whose school has not acknowledged within an hour (configurable) of the
    deadline, the soonest due first. The referral (`referral_id`) holds the child."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.encompass_queue(ctx), now=now
    )
