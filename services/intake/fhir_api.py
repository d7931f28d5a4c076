"""The front door in FHIR R4, for health partners: routes only.

`POST /fhir/$process-message` and `POST /fhir/ServiceRequest` read a referral
(`intake.fhir_mapping`) into the JSON API's submission and run the same command as
`POST /v1/referrals`: same validation, matching, idempotency and events. Every
answer is `application/fhir+json`, a refusal an OperationOutcome with the status
the JSON API gives (the route class below catches the refusals of the
dependencies, such as a missing token, as well as the command's).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from hub.commands import run_command
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import FieldError, Problem, field_errors, problem_of
from hub.http.scope import caller
from hub.queries import run_query
from hub.refusals import Refusal
from hub.scope import Scope
from hub.service import Runtime, runtime_of
from intake import commands, fhir_mapping, fhir_status, queries
from intake.fhir_mapping import FHIR_MEDIA_TYPE
from intake.schemas import ReferralAccepted
from intake.settings import IntakeSettings, current_settings


class FhirResponse(Response):
    media_type = FHIR_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


def _outcome(problem: Problem) -> Response:
    errors = [error.model_dump() for error in problem.errors]
    body = fhir_mapping.operation_outcome(problem.status, problem.detail, errors)
    return FhirResponse(body, problem.status, headers=problem.headers)


class FhirRoute(APIRoute):
    """Answers every refusal of its route, the dependencies' included, as an OperationOutcome."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Refusal as refusal:
                return _outcome(problem_of(refusal))
            except Problem as problem:
                return _outcome(problem)
            except RequestValidationError as invalid:
                return _outcome(Problem(422, errors=field_errors(invalid.errors())))
            except HTTPException as exc:
                return _outcome(Problem(exc.status_code, headers=exc.headers))

        return answer


router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)

Settings = Annotated[IntakeSettings, Depends(current_settings)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
Referrer = Annotated[Scope, Depends(caller("referrals:write"))]
Reader = Annotated[Scope, Depends(caller("referrals:read"))]


def _body(example: str, description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                FHIR_MEDIA_TYPE: {
                    "schema": {"type": "object"},
                    "example": fhir_mapping.example(example),
                }
            },
        }
    }


_RESOURCE = {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Received: the response message, or the ServiceRequest",
        "content": _RESOURCE,
    },
    **{
        status: {"description": "An OperationOutcome", "content": _RESOURCE}
        for status in (400, 401, 403, 409, 413, 415, 422)
    },
}


async def _read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in (FHIR_MEDIA_TYPE, "application/json"):
        raise Problem(415, detail="Send the request body as application/fhir+json.")
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError):
        raise Problem(400, detail="The request body is not valid JSON.") from None


async def _refer(
    request: Request,
    runtime: Runtime,
    scope: Scope,
    settings: IntakeSettings,
    now: Any,
    idempotency_key: str | None,
    read: fhir_mapping.Parser,
    answer: Callable[[ReferralAccepted, Mapping[str, Any]], dict[str, Any]],
) -> Response:
    body = await _read_json(request)
    submission = read(body, scope.organisation_type)
    response = await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.receive_referral(ctx, submission, settings),
        now=now,
        payload=submission,
        idempotency_key=idempotency_key,
    )
    accepted = ReferralAccepted.model_validate_json(response.body)
    headers = {
        name: value for name, value in response.headers.items() if name.lower() != "content-length"
    }
    headers.pop("content-type", None)
    return FhirResponse(answer(accepted, body), response.status_code, headers=headers)


@router.post(
    "/$process-message",
    status_code=202,
    response_class=FhirResponse,
    responses=_ANSWERS,
    openapi_extra=_body("health-visitor-message.json", "A referral message Bundle."),
    summary="Refer a family with a FHIR R4 referral message",
)
async def process_message(
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A Bundle of type message: MessageHeader (event referral-request), one ServiceRequest,
    a Patient per child, a RelatedPerson per household member, the referrer as Practitioner
    (and PractitionerRole, Organization), and Consent where the family gave it.

    Answers 202 with the response message (the ServiceRequest's id is the referral id,
    `Location` its JSON view); as `POST /v1/referrals`, nothing about the family the hub
    matched it to.
    """
    return await _refer(
        request,
        runtime,
        scope,
        settings,
        now,
        idempotency_key,
        fhir_mapping.read_message,
        fhir_mapping.accepted_message,
    )


@router.post(
    "/ServiceRequest",
    status_code=202,
    response_class=FhirResponse,
    responses=_ANSWERS,
    openapi_extra=_body("gp-service-request.json", "A ServiceRequest with its people contained."),
    summary="Refer a family with a FHIR R4 ServiceRequest",
)
async def create_service_request(
    request: Request,
    runtime: RuntimeDep,
    scope: Referrer,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A ServiceRequest whose subject, other children, household, requester and consent are
    contained resources it references (`#id`). Answers 202 with the ServiceRequest as
    received: its id is the referral id, `Location` its JSON view.
    """
    return await _refer(
        request,
        runtime,
        scope,
        settings,
        now,
        idempotency_key,
        fhir_mapping.read_service_request,
        fhir_mapping.accepted_service_request,
    )


_READ_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The resource", "content": _RESOURCE},
    **{
        status: {"description": "An OperationOutcome", "content": _RESOURCE}
        for status in (400, 401, 403, 404, 422)
    },
}


async def _partner_view(
    request: Request, runtime: Runtime, scope: Scope, now: Any, referral_id: UUID
) -> Any:
    """The caller's referral as its referrer sees it; 404 when it is not the caller's."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.referral(ctx, referral_id), now=now
    )


@router.get(
    "/Task/{task_id}",
    response_class=FhirResponse,
    responses=_READ_ANSWERS,
    summary="A referral's progress as a FHIR Task",
)
async def read_task(
    task_id: UUID, request: Request, runtime: RuntimeDep, scope: Reader, now: Now
) -> Response:
    """The Task of a referral you made (its id is the referral id): `status` and
    `businessStatus` follow the hub's events (received, triaged with its outcome as
    `output`, allocated with the lead professional as `owner`, closed with its reason,
    withdrawn). 404 for a referral that is not yours."""
    view = await _partner_view(request, runtime, scope, now, task_id)
    return FhirResponse(fhir_status.task(view), 200)


@router.get(
    "/Task",
    response_class=FhirResponse,
    responses=_READ_ANSWERS,
    summary="Find a referral's Task by its ServiceRequest",
)
async def search_tasks(
    request: Request,
    runtime: RuntimeDep,
    scope: Reader,
    now: Now,
    based_on: Annotated[
        str,
        Query(
            alias="based-on",
            max_length=100,
            description="`ServiceRequest/{id}` (or the bare id) of a referral you made.",
        ),
    ],
) -> Response:
    """A searchset Bundle with the referral's Task, or none when the referral is not yours
    (as FHIR searches answer; nothing says whether it exists). Only `based-on` is
    supported: any other search parameter is refused."""
    unsupported = sorted(set(request.query_params) - {"based-on", "_format"})
    if unsupported:
        raise Problem(
            400,
            detail="Only the based-on search parameter is supported on Task.",
            errors=[
                FieldError(
                    field=f"query.{name}",
                    message="not a supported search parameter",
                    code="not_supported",
                )
                for name in unsupported
            ],
        )
    referral_id = fhir_status.referral_id_of(based_on)
    views = (
        []
        if referral_id is None
        else await run_query(
            runtime,
            request,
            scope,
            lambda ctx: queries.referrer_views(ctx, referral_id),
            now=now,
        )
    )
    return FhirResponse(fhir_status.task_search(views, str(request.url)), 200)


@router.get(
    "/ServiceRequest/{service_request_id}",
    response_class=FhirResponse,
    responses=_READ_ANSWERS,
    summary="A referral you made, as a FHIR ServiceRequest",
)
async def read_service_request(
    service_request_id: UUID, request: Request, runtime: RuntimeDep, scope: Reader, now: Now
) -> Response:
    """The referral's status, priority, dates and your reference: not the people, which
    the hub does not send back. 404 for a referral that is not yours."""
    view = await _partner_view(request, runtime, scope, now, service_request_id)
    return FhirResponse(fhir_status.service_request(view), 200)


@router.get(
    "/metadata",
    summary="The FHIR CapabilityStatement: what this front door supports",
    response_class=FhirResponse,
    responses={200: {"description": "The CapabilityStatement", "content": _RESOURCE}},
)
async def metadata(now: Now) -> Response:
    """The two ways to refer, and reading a referral back as Task and ServiceRequest."""
    return FhirResponse(fhir_mapping.capability_statement(now), 200)
