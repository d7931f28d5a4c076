"""The composition root of one service process: database, store, relay, consumer, app.

A service declares itself with a `ServiceDefinition`; `Runtime` wires the hub's
parts for it, and `create_service_app` gives uvicorn the HTTP app whose
lifespan starts and drains the background workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from hub.auth import token_service
from hub.consumer import ProjectionConsumer
from hub.contracts.base import EventData
from hub.contracts.registry import EVENT_TYPES
from hub.contracts.topics import service_topic
from hub.db import Database
from hub.envelopes import meta_of_recorded
from hub.http.app import create_app
from hub.kafka import check_broker
from hub.observability import configure_logging, configure_tracing, current_traceparent
from hub.outbox import OutboxRelay
from hub.projections import Projection
from hub.settings import HubSettings
from hub.store import EventStore, PendingEvent, RecordedEvent
from hub.writer import GroupCommitWriter

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    title: str
    description: str
    port: int
    migrations: Path
    routers: Sequence[APIRouter] = ()
    projections: Sequence[Projection] = ()
    # Topics of other services whose events this service's projections follow.
    consumes: Sequence[str] = ()
    version: str = "0.1.0"
    # Extra readiness checks beyond the database and the broker.
    readiness_checks: dict[str, Callable[[], None]] = field(default_factory=dict)

    @property
    def topic(self) -> str | None:
        """The topic this service writes, if it produces events."""
        produces = any(model.producer == self.name for model in EVENT_TYPES.values())
        return service_topic(self.name) if produces else None

    def projection(self, name: str) -> Projection:
        for projection in self.projections:
            if projection.name == name:
                return projection
        known = ", ".join(p.name for p in self.projections) or "none"
        raise KeyError(f"{self.name} has no projection {name!r} (it has: {known})")


class UnitOfWork:
    """One write transaction: reads streams, appends events, feeds the service's own projections."""

    def __init__(self, runtime: Runtime, conn: Connection) -> None:
        self.conn = conn
        self._runtime = runtime

    def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        return self._runtime.store.read_stream(self.conn, stream_id)

    def serialise_appends(self) -> None:
        """Wait for, then hold, the store's append lock until this transaction ends.

        For a decision that reads beyond its own stream (is this child already
        known?): a concurrent decision could otherwise read the same state and
        both act on it, since neither's stream conflicts with the other's.
        """
        self._runtime.store.serialise_appends(self.conn)

    def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[EventData | PendingEvent],
        *,
        actor: str | None = None,
    ) -> list[RecordedEvent]:
        pending = [e if isinstance(e, PendingEvent) else PendingEvent(e) for e in events]
        traceparent, tracestate = current_traceparent()
        recorded = self._runtime.store.append(
            self.conn,
            stream_id,
            expected_version,
            pending,
            actor=actor,
            traceparent=traceparent,
            tracestate=tracestate,
        )
        for event, source in zip(recorded, pending, strict=True):
            self._runtime.project_own(self.conn, event, source.data)
        return recorded


class Runtime:
    def __init__(self, definition: ServiceDefinition, settings: HubSettings) -> None:
        self.definition = definition
        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        topic = definition.topic
        self.store = EventStore(topic) if topic else None
        self.relay = OutboxRelay(self.db, settings) if topic else None
        self.consumer = (
            ProjectionConsumer(settings, self.db, definition.projections, definition.consumes)
            if definition.consumes
            else None
        )
        self.tokens = token_service(settings)
        self._writer: GroupCommitWriter | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    async def write(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run `work` in a write transaction (group-committed with concurrent ones).

        It runs on the writer thread in the caller's context, so the events it
        stores carry the request's traceparent; the relay is woken after commit.
        """
        if self._writer is None:
            self._writer = GroupCommitWriter(
                self.db, self.definition.name, after_commit=self._wake_relay
            )
        return await self._writer.run(lambda conn: work(UnitOfWork(self, conn)))

    async def read(self, query: Callable[[Connection], T]) -> T:
        """Run a read off the event loop, so a slow database never stalls other requests."""
        return await run_in_threadpool(self._read_now, query)

    def _read_now(self, query: Callable[[Connection], T]) -> T:
        with self.db.read() as conn:
            return query(conn)

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    def project_own(self, conn: Connection, event: RecordedEvent, data: EventData) -> None:
        meta = meta_of_recorded(event, self.definition.name)
        for projection in self.definition.projections:
            if projection.handles(event.event_type):
                projection.apply(conn, data, meta)

    def readiness_checks(self) -> dict[str, Callable[[], None]]:
        return {
            "database": self.db.check,
            "broker": lambda: check_broker(self.settings),
            **self.definition.readiness_checks,
        }

    def start(self) -> None:
        workers: list[tuple[str, Callable[[threading.Event], Any]]] = []
        if self.relay is not None:
            workers.append(("outbox-relay", self.relay.run))
        if self.consumer is not None:
            workers.append(("consumer", self.consumer.run))
        for name, target in workers:
            thread = threading.Thread(
                target=target,
                args=(self._stop,),
                name=f"{self.definition.name}-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Consumers finish their record and commit; the relay publishes what is queued."""
        self._stop.set()
        if self.relay is not None:
            self.relay.notify()
        for thread in self._threads:
            thread.join(drain_timeout_s)
        self._threads.clear()
        if self._writer is not None:
            self._writer.close()
        if self.relay is not None:
            if not self.relay.drain(drain_timeout_s):
                log.warning("stopping with events still in the outbox; they are sent at next start")
            self.relay.close()
        self.db.dispose()


def create_service_app(
    definition: ServiceDefinition, settings: HubSettings | None = None
) -> FastAPI:
    settings = settings or HubSettings(service_name=definition.name)
    if settings.service_name != definition.name:
        raise ValueError(f"settings are for {settings.service_name!r}, not {definition.name!r}")
    configure_logging(definition.name, settings.log_level, settings.log_json)
    # kafka-python narrates every connection at INFO; its warnings are what matter.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    configure_tracing(definition.name)
    runtime = Runtime(definition, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()

    app = create_app(
        service_name=definition.name,
        title=definition.title,
        version=definition.version,
        description=definition.description,
        routers=definition.routers,
        readiness_checks=runtime.readiness_checks(),
        lifespan=lifespan,
        max_body_bytes=settings.http_max_body_bytes,
    )
    app.state.runtime = runtime
    return app


async def runtime_of(request: Request) -> Runtime:
    """FastAPI dependency: the runtime of the app serving this request.

    Async so that FastAPI does not send it to the threadpool on every request.
    """
    return request.app.state.runtime
