"""Intake, the front door: its definition and the app factory uvicorn runs."""

from pathlib import Path

from fastapi import FastAPI

from hub.auth import token_router
from hub.contracts.topics import service_topic
from hub.http.subject_access import family_router
from hub.service import ServiceDefinition, create_service_app
from intake import queries, subject_access
from intake.api import router
from intake.deadlines import EncompassDeadlineWatch
from intake.encompass_api import router as encompass_router
from intake.fhir_api import router as fhir_router
from intake.projections import PROJECTIONS
from intake.settings import intake_settings

definition = ServiceDefinition(
    name="intake",
    title="Early Help Hub: intake",
    description=(
        "The single front door for partner referrals to early help: partners post referrals "
        "here and ask what happened to them; front-door staff triage them from the queue."
    ),
    port=8001,
    migrations=Path(__file__).parent / "migrations",
    routers=[
        token_router,
        router,
        encompass_router,
        fhir_router,
        subject_access.router,
        family_router(queries.family_records),
    ],
    issues_tokens=True,
    workers=[lambda runtime: EncompassDeadlineWatch(runtime, intake_settings())],
    projections=PROJECTIONS,
    # Allocation's CaseAllocated tells a referrer who the lead professional is; case
    # plan's step-downs and closures tell matching which families have open cases, and
    # the schools it records for children where their Encompass notices go.
    consumes=[service_topic("allocation"), service_topic("caseplan")],
)


def create_app() -> FastAPI:
    # A misconfigured EARLYHELP_INTAKE_*, school calendar or schools file stops the
    # service at start, not at the first police notification.
    settings = intake_settings()
    settings.school_calendar()
    settings.schools()
    return create_service_app(definition)
