"""Intake, the front door: its definition and the app factory uvicorn runs."""

from pathlib import Path

from fastapi import FastAPI

from hub.auth import token_router
from hub.service import ServiceDefinition, create_service_app
from intake.api import router
from intake.projections import PROJECTIONS

definition = ServiceDefinition(
    name="intake",
    title="Early Help Hub: intake",
    description=(
        "The single front door for partner referrals to early help: partners post referrals "
        "here and ask what happened to them."
    ),
    port=8001,
    migrations=Path(__file__).parent / "migrations",
    routers=[token_router, router],
    projections=PROJECTIONS,
)


def create_app() -> FastAPI:
    return create_service_app(definition)
