"""Case plan: assessment, plan, reviews, step-up/down, closure and the family chronology."""

from pathlib import Path

from fastapi import FastAPI

from caseplan import queries, retention
from caseplan.api import router
from caseplan.projections import PROJECTIONS
from hub.contracts.topics import service_topic
from hub.http.subject_access import family_router
from hub.retention import CaseRecordsDecision, load_schedule
from hub.service import ServiceDefinition, create_service_app
from hub.settings import HubSettings

definition = ServiceDefinition(
    name="caseplan",
    title="Early Help Hub: case plan",
    description=(
        "The life of an early help case for a whole family, and the single chronology of "
        "everything that happened with it."
    ),
    port=8003,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, family_router(queries.family_records)],
    projections=PROJECTIONS,
    consumes=[service_topic("intake"), service_topic("allocation")],
    # GET /v1/retention/due reads the schedule: a service without it must not start.
    startup_checks={
        "retention schedule": lambda: load_schedule(HubSettings().retention_schedule_file)
    },
    case_records=CaseRecordsDecision(
        falling_due=retention.falling_due, held_resources=retention.held_resources
    ),
)


def create_app() -> FastAPI:
    return create_service_app(definition)
