"""Notifications: what partners may see of each case, by webhook, partner topic and e-mail."""

from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from hub.contracts.topics import SERVICE_TOPICS
from hub.http.subject_access import family_router
from hub.service import Runtime, ServiceDefinition, create_service_app
from hub.settings import HubSettings
from notifications import queries
from notifications.api import router, staff_router
from notifications.delivery import DeliveryWorker
from notifications.encryption import reseal_stored_secrets, secret_box
from notifications.policy import SharingPolicy
from notifications.projections import PROJECTIONS, keep_fields_of
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
    routers=[router, staff_router, family_router(queries.family_records)],
    projections=PROJECTIONS,
    consumes=list(SERVICE_TOPICS.values()),
)


class _Delivery:
    """Notifications' background work: stored secrets resealed before anything is
    consumed, then the delivery worker, stopped before the consumer."""

    def __init__(self, runtime: Runtime, own, policy, box) -> None:
        self._runtime = runtime
        self._box = box
        self._worker = DeliveryWorker(runtime.db, runtime.settings, own, policy, box)

    def prepare(self) -> None:
        # Keys that open nothing stop the service before it consumes.
        with self._runtime.db.write() as conn:
            reseal_stored_secrets(conn, self._box)
            warn_of_subscriptions_the_api_would_refuse(conn)

    def start(self) -> None:
        # A journalled event is fanned out as soon as it may be, not at the next poll.
        if self._runtime.consumer is not None:
            self._runtime.consumer.after_apply(self._worker.wake)
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()


def create_app(
    settings: HubSettings | None = None, own: NotificationsSettings | None = None
) -> FastAPI:
    """The service's app; its delivery worker runs through the definition's workers hook.

    Before anything starts, every stored signing secret not encrypted under the
    first key is re-encrypted under it; one that no key opens stops the service.
    """
    own = own or notifications_settings()
    # A policy that does not load stops the service at start, not at the first event.
    policy = SharingPolicy.load(own.policy_file)
    # The journal keeps only what this policy could share.
    keep_fields_of(policy)
    # The worker is made when the app starts, from the secret box the app holds.
    delivering = replace(
        definition,
        workers=[lambda runtime: _Delivery(runtime, own, policy, app.state.secret_box)],
    )
    app = create_service_app(delivering, settings)
    runtime = app.state.runtime
    # Keys missing outside the embedded default stop the service here, before it listens.
    app.state.secret_box = secret_box(own, runtime.settings.var_dir, embedded=runtime.db.is_sqlite)
    app.state.sharing_policy = policy
    app.state.notifications_settings = own
    return app
