"""Subject access requests: everything the hub holds about a person, from all four services.

Intake is the front door for them as it is for referrals: it alone knows people
(matching keeps each child's person id and NHS number), so it resolves the person
to their families, answers for its own records, and asks each other service for its
part over HTTP with the officer's own token, so that every service checks the
officer's role and audits the read itself. One answer: JSON, or a page for people
(`?format=html` or `Accept: text/html`). A service that does not answer fails the
whole request (502 or 504, naming it): an incomplete answer must not be sent on.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.audit import record_access
from hub.http.dependencies import Now
from hub.http.problems import problem_responses
from hub.http.subject_access import InformationGovernance
from hub.observability import current_traceparent
from hub.queries import run_query
from hub.refusals import Refusal
from hub.service import Runtime, runtime_of
from hub.subject_access import (
    AUDIT_ACTION,
    REDACTION_NOTE,
    FamilyRecords,
    NhsNumberLookup,
    PersonFound,
    SubjectAccessAnswer,
)
from intake import queries
from intake.settings import IntakeSettings, current_settings

router = APIRouter(prefix="/v1", tags=["subject access"])

_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# A nested value (a referral's children, a case's plan) as indented JSON; the page escapes it.
_PAGES.filters["shown"] = lambda value: (
    "" if value is None else value if isinstance(value, str) else json.dumps(value, indent=1)
)

Format = Annotated[
    Literal["json", "html"] | None,
    Query(description="`html` for a readable page; otherwise as the Accept header asks (JSON)."),
]


class ServiceDidNotAnswer(Refusal):
    """Another service's part could not be had: the answer would be incomplete."""

    status = 502
    title = "A service did not answer"


class ServiceTimedOut(ServiceDidNotAnswer):
    status = 504
    title = "A service did not answer in time"


_ANSWERS = {
    200: {
        "description": "The whole answer, as JSON or (`?format=html`) as a page.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/subject-access/people/{person_id}",
    response_model=SubjectAccessAnswer,
    responses={**_ANSWERS, **problem_responses(401, 403, 404, 422, 502, 504)},
    summary="Everything the hub holds about a person, by person id (subject access)",
)
async def person_by_id(
    person_id: UUID,
    request: Request,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    scope: InformationGovernance,
    settings: Annotated[IntakeSettings, Depends(current_settings)],
    now: Now,
    format: Format = None,
) -> Response:
    """The person's referrals, case, assessment, plan, reviews, chronology, disclosures to
    partners and the audit of who read their records, from all four services, for each
    family the person is in. A child or a household member named in a referral. For
    information governance only; the request is audited in every service.
    """
    people = await run_query(
        runtime, request, scope, lambda ctx: queries.people_named(ctx, person_id, None), now=now
    )
    answer = await _gather(request, runtime, scope, settings, now, people, person_id=str(person_id))
    return _respond(request, answer, format)


@router.post(
    "/subject-access/people-by-nhs-number",
    response_model=SubjectAccessAnswer,
    responses={**_ANSWERS, **problem_responses(401, 403, 404, 413, 422, 502, 504)},
    summary="Everything the hub holds about a child, by NHS number (subject access)",
)
async def person_by_nhs_number(
    lookup: NhsNumberLookup,
    request: Request,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    scope: InformationGovernance,
    settings: Annotated[IntakeSettings, Depends(current_settings)],
    now: Now,
    format: Format = None,
) -> Response:
    """As by person id, for every person id the NHS number was recorded under (a child
    whose records were never matched has more than one). Children only: the hub does
    not record household members' NHS numbers. A POST that stores nothing (but its audit
    rows): the number goes in the body, never in a URL that logs and proxies keep.
    """
    nhs_number = lookup.nhs_number
    people = await run_query(
        runtime, request, scope, lambda ctx: queries.people_named(ctx, None, nhs_number), now=now
    )
    answer = await _gather(request, runtime, scope, settings, now, people, nhs_number=nhs_number)
    return _respond(request, answer, format)


async def _gather(
    request, runtime, scope, settings, now, people: list[PersonFound], **asked_for: str
) -> SubjectAccessAnswer:
    families = sorted({person.family_id for person in people}, key=str)
    own = [
        await run_query(
            runtime, request, scope, lambda ctx, f=family: queries.family_records(ctx, f), now=now
        )
        for family in families
    ]
    others = await _ask_the_others(request, settings, families)
    # The request, on record beside each record it read (each service audits its own reads).
    await record_access(
        runtime,
        scope,
        AUDIT_ACTION,
        [("person", str(p.person_id)) for p in people] + [("family", str(f)) for f in families],
    )
    return SubjectAccessAnswer(
        requested_by=scope.subject,
        generated_at=now,
        asked_for=asked_for,
        people=people,
        families=families,
        note_for_officer=REDACTION_NOTE,
        services=[*own, *others],
    )


async def _ask_the_others(
    request: Request, settings: IntakeSettings, families: list[UUID]
) -> list[FamilyRecords]:
    headers = {"Authorization": request.headers["Authorization"], "Accept": "application/json"}
    traceparent, tracestate = current_traceparent()
    if traceparent:
        headers["traceparent"] = traceparent
        if tracestate:
            headers["tracestate"] = tracestate
    timeout = settings.subject_access_timeout_seconds
    async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
        asked = [
            _ask(client, service, f"{url}/v1/subject-access/families/{family}", timeout)
            for service, url in settings.service_urls().items()
            for family in families
        ]
        return list(await asyncio.gather(*asked))


async def _ask(client: httpx.AsyncClient, service: str, url: str, timeout: float) -> FamilyRecords:
    try:
        answer = await client.get(url)
    except httpx.TimeoutException as exc:
        raise ServiceTimedOut(
            f"{service} did not answer within {timeout:g} s; nothing was left out on purpose, "
            "ask again when it is back.",
            extensions={"service": service},
        ) from exc
    except httpx.HTTPError as exc:
        raise ServiceDidNotAnswer(
            f"{service} could not be reached ({type(exc).__name__}); ask again when it is back.",
            extensions={"service": service},
        ) from exc
    if answer.status_code != 200:
        raise ServiceDidNotAnswer(
            f"{service} refused its part with status {answer.status_code}.",
            extensions={"service": service, "service_status": answer.status_code},
        )
    return FamilyRecords.model_validate_json(answer.content)


def _respond(request: Request, answer: SubjectAccessAnswer, format: str | None) -> Response:
    wants_html = format == "html" or (
        format is None and "text/html" in request.headers.get("accept", "")
    )
    if not wants_html:
        return Response(answer.model_dump_json(), media_type="application/json", headers=_PRIVATE)
    page = _PAGES.get_template("subject_access.html").render(answer=answer)
    return Response(page, media_type="text/html; charset=utf-8", headers=_PRIVATE)


# A person's whole record: no cache between the hub and the officer keeps a copy.
_PRIVATE = {"Cache-Control": "no-store"}
