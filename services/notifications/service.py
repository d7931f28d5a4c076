"""Notifications: what partners may see of each case, by webhook, partner topic and e-mail."""

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hub.auth import token_router
from hub.contracts.topics import SERVICE_TOPICS
from hub.service import ServiceDefinition, create_service_app
from hub.settings import HubSettings
from notifications.api import router
from notifications.delivery import DeliveryWorker
from notifications.policy import SharingPolicy
from notifications.projections import PROJECTIONS
from notifications.settings import NotificationsSettings, notifications_settings

definition = ServiceDefinition(
    name="notifications",
    title="Early Help Hub: notifications",
    description=(
        "Partner subscriptions under information-sharing rules: signed webhooks, partner "
        "topics and e-mail."
    ),
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    routers=[token_router, router],
    projections=PROJECTIONS,
    consumes=list(SERVICE_TOPICS.values()),
)


def create_app(
    settings: HubSettings | None = None, own: NotificationsSettings | None = None
) -> FastAPI:
    """The service's app; its lifespan runs the hub's workers and, inside them, delivery.

    The delivery worker starts after the consumer and stops before it, so no
    journalled event waits for a worker that has gone.
    """
    own = own or notifications_settings()
    # A policy that does not load stops the service at start, not at the first event.
    policy = SharingPolicy.load(own.policy_file)
    app = create_service_app(definition, settings)
    runtime = app.state.runtime
    app.state.sharing_policy = policy
    app.state.notifications_settings = own
    hub_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        async with hub_lifespan(app_) as state:
            worker = DeliveryWorker(runtime.db, runtime.settings, own, policy)
            worker.start()
            try:
                yield state
            finally:
                worker.stop()

    app.router.lifespan_context = lifespan
    return app
