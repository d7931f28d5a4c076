"""Allocation: localities, teams, workers, lead professionals and the multi-agency panel."""

from pathlib import Path

from fastapi import FastAPI

from allocation import queries, registry
from allocation.api import router
from allocation.projections import PROJECTIONS
from allocation.settings import allocation_settings
from hub.contracts.topics import service_topic
from hub.http.subject_access import family_router
from hub.service import ServiceDefinition, create_service_app

definition = ServiceDefinition(
    name="allocation",
    title="Early Help Hub: allocation",
    description=(
        "Who works each case: locality teams, workers and their caseloads, lead professionals "
        "and the multi-agency panel that agrees each family's package of support."
    ),
    port=8002,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, family_router(queries.family_records)],
    projections=PROJECTIONS,
    consumes=[service_topic("intake"), service_topic("caseplan")],
    # The registry file seeds an empty database; a missing or invalid one is found at
    # start, not on the first allocation after a database restore.
    startup_checks={
        "registry file": lambda: registry.read_file(allocation_settings().registry_file)
    },
)


def create_app() -> FastAPI:
    allocation_settings()  # a misconfigured EARLYHELP_ALLOCATION_* stops the service at start
    return create_service_app(definition)
