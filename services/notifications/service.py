"""Notifications: what partners may see of each case, by webhook, partner topic and e-mail."""

from pathlib import Path

from fastapi import FastAPI

from hub.contracts.topics import SERVICE_TOPICS
from hub.service import ServiceDefinition, create_service_app
from notifications.projections import PROJECTIONS

definition = ServiceDefinition(
    name="notifications",
    title="Early Help Hub: notifications",
    description=(
        "Partner subscriptions under information-sharing rules: signed webhooks, partner "
        "topics and e-mail."
    ),
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    projections=PROJECTIONS,
    consumes=list(SERVICE_TOPICS.values()),
)


def create_app() -> FastAPI:
    return create_service_app(definition)
