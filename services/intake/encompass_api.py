"""Operation Encompass over HTTP: police notifications in, schools' acknowledgements, and
the front door's queue of notices to act on. Routes only; the work is in `commands`
and `queries`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.commands import run_command
from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.identifiers import SLUG_PATTERN
from hub.encompass_links import link_key, verify
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.refusals import Refusal
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


_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_HTML = {"text/html": {"schema": {"type": "string"}}}
_LINK_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The page", "content": _HTML},
    404: {"description": "Not a valid link (the page says so)", "content": _HTML},
    # Named here: a page route would otherwise document its problem as text/html.
    422: {
        "description": "The link lacks its school or signature",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
        },
    },
}
School = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        pattern=f"^{SLUG_PATTERN.pattern}$",
        description="The school the link was sent to.",
    ),
]
LinkToken = Annotated[
    str,
    Query(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The link's signature.",
    ),
]


def _page(status: int, **values: object) -> HTMLResponse:
    page = _PAGES.get_template("encompass_acknowledgement.html").render(**values)
    # The page holds a link that acknowledges: no caching, no referrer leaking it onwards.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(page, status, headers=headers)


def _invalid_link() -> HTMLResponse:
    return _page(404, state="invalid", message="This link is not valid for any notice.")


def _signed(runtime: Runtime, notice_id: UUID, school: str, token: str) -> bool:
    key = link_key(runtime.settings)
    return key is not None and verify(key, notice_id, school, token)


@router.get(
    "/encompass-notices/{notice_id}/acknowledgement-link",
    response_class=HTMLResponse,
    responses=_LINK_PAGE,
    summary="The page an Operation Encompass e-mail's link opens (no sign-in)",
)
async def acknowledgement_page(
    notice_id: UUID, request: Request, runtime: RuntimeDep, school: School, token: LinkToken
) -> HTMLResponse:
    """A page with one button that acknowledges the notice. Opening it changes nothing:
    mail scanners open every link of the messages they check."""
    if not _signed(runtime, notice_id, school, token):
        return _invalid_link()
    return _page(200, state="confirm", action=str(request.url))


@router.post(
    "/encompass-notices/{notice_id}/acknowledgement-link",
    response_class=HTMLResponse,
    responses=_LINK_PAGE,
    summary="The school's designated safeguarding lead acknowledges by the e-mail's link",
)
async def acknowledge_by_link(
    notice_id: UUID,
    request: Request,
    runtime: RuntimeDep,
    now: Now,
    school: School,
    token: LinkToken,
) -> HTMLResponse:
    """Records the acknowledgement as the school's, exactly as the API call would (the
    first acknowledgement stands); the link is signed for this notice and this school
    only, by the key intake and notifications share."""
    if not _signed(runtime, notice_id, school, token):
        return _invalid_link()
    scope = Scope(
        subject=f"{school} (the e-mailed acknowledgement link)",
        kind="partner",
        name=school,
        permissions=frozenset({"referrals:read"}),
        organisation=school,
        organisation_type=PartnerOrganisationType.SCHOOL.value,
    )
    try:
        answer = await run_command(
            runtime,
            request,
            scope,
            lambda ctx: commands.acknowledge_notice(ctx, notice_id),
            now=now,
        )
    except Refusal:
        return _invalid_link()
    acknowledged = NoticeAcknowledged.model_validate(json.loads(answer.body))
    when = acknowledged.acknowledged_at.strftime("%A %d %B %Y, %H:%M UTC")
    return _page(200, state="done", when=when, in_time=acknowledged.in_time)
