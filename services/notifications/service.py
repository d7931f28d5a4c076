"""Notifications: what partners may see of each case, by webhook, partner topic and e-mail."""

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from hub.contracts.topics import SERVICE_TOPICS
from hub.service import ServiceDefinition, create_service_app
from hub.settings import HubSettings
from notifications.api import router
from notifications.delivery import DeliveryWorker
from notifications.encryption import reseal_stored_secrets, secret_box
from notifications.policy import SharingPolicy
from notifications.projections import PROJECTIONS
from notifications.settings import NotificationsSettings, notifications_settings
from notifications.stored_subscriptions import warn_of_subscriptions_the_api_would_refuse

definition = ServiceDefinition(
    name="notifications",
    title="Early Help Hub: notifications",
    description=(
        "Partner subscriptions under information-sharing rules: signed webhooks, partner "
        "topics and e-mail."
    ),
    port=8004,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    projections=PROJECTIONS,
    consumes=list(SERVICE_TOPICS.values()),
)


def create_app(
    settings: HubSettings | None = None, own: NotificationsSettings | None = None
) -> FastAPI:
    """The service's app; its lifespan runs the hub's workers and, inside them, delivery.

    The delivery worker starts after the consumer and stops before it, so no
    journalled event waits for a worker that has gone. Before anything starts,
    every stored signing secret not encrypted under the first key is re-encrypted
    under it; one that no key opens stops the service.
    """
    own = own or notifications_settings()
    # A policy that does not load stops the service at start, not at the first event.
    policy = SharingPolicy.load(own.policy_file)
    app = create_service_app(definition, settings)
    runtime = app.state.runtime
    # Keys missing outside the embedded default stop the service here, before it listens.
    box = secret_box(own, runtime.settings.var_dir, embedded=runtime.db.is_sqlite)
    app.state.sharing_policy = policy
    app.state.notifications_settings = own
    app.state.secret_box = box
    hub_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI):
        # Before the hub's workers start: keys that open nothing stop it before it consumes.
        with runtime.db.write() as conn:
            reseal_stored_secrets(conn, box)
            warn_of_subscriptions_the_api_would_refuse(conn)
        async with hub_lifespan(app_) as state:
            worker = DeliveryWorker(runtime.db, runtime.settings, own, policy, box)
            worker.start()
            try:
                yield state
            finally:
                worker.stop()

    app.router.lifespan_context = lifespan
    return app
