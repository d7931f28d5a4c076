"""The composition root of one service process: database, store, relay, consumer, app.

A service declares itself with a `ServiceDefinition`; `Runtime` wires the hub's
parts for it, and `create_service_app` gives uvicorn the HTTP app whose
lifespan starts and drains the background workers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy import Connection, create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool
from starlette.concurrency import run_in_threadpool

from hub.auth import Identities, reload_identities_on_sighup, token_service
from hub.consumer import ProjectionConsumer
from hub.contracts.base import EventData
from hub.contracts.registry import EVENT_TYPES
from hub.contracts.topics import service_topic
from hub.db import Database
from hub.dlq_api import router as dead_letters_router
from hub.envelopes import meta_of_recorded
from hub.http.app import create_app
from hub.kafka import check_broker
from hub.liveness import ServingMark, application_name
from hub.observability import configure_logging, configure_tracing, current_traceparent
from hub.outbox import OutboxRelay
from hub.projections import Projection
from hub.retention import CaseRecordsDecision
from hub.settings import HubSettings
from hub.store import EventStore, PendingEvent, RecordedEvent
from hub.tokens import KeyConfigurationError
from hub.writer import GroupCommitWriter

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundWorker(Protocol):
    """A service's own background work (delivering webhooks, say), run beside the app.

    `prepare()` runs before the hub's relay and consumer start (a check that must
    stop the service before it consumes anything); `start()` after them; `stop()`
    drains it before them.
    """

    def prepare(self) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class StartupError(RuntimeError):
    """Why a service refuses to start, in one line an operator can act on."""


def describe_failure(exc: BaseException) -> str:
    """One line about an exception raised while starting: no traceback, no newlines."""
    if isinstance(exc, StartupError):
        text = str(exc)
    elif isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            if exc.title == "HubSettings" and where:
                where = f"EARLYHELP_{where.upper()}"
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        text = f"invalid {exc.title}: " + "; ".join(problems)
    else:
        text = str(exc)
        if not text.startswith(type(exc).__name__):
            text = f"{type(exc).__name__}: {text}"
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."


def check_configuration(settings: HubSettings) -> None:
    """What can be known wrong without reaching anything: raises StartupError.

    The database URL must parse and name an installed driver; the identities
    file must exist and be valid. (Token keys are checked when the
    service is built, since only the token issuer may hold the private ones.)
    """
    try:
        url = make_url(settings.database_url)
        url.get_dialect()
    except NoSuchModuleError as exc:  # before ArgumentError: a subclass of it
        raise StartupError(
            f"EARLYHELP_DATABASE_URL names an unknown database driver {url.drivername!r} "
            "(use sqlite:/// or postgresql+psycopg://)"
        ) from exc
    except ArgumentError as exc:
        raise StartupError(
            "EARLYHELP_DATABASE_URL is not a database URL "
            "(expected e.g. postgresql+psycopg://user:password@host:5432/dbname)"
        ) from exc
    if not settings.identities_file.is_file():
        raise StartupError(
            f"identities file {settings.identities_file} not found (EARLYHELP_IDENTITIES_FILE)"
        )
    try:
        Identities.load(settings.identities_file)
    except Exception as exc:
        raise StartupError(
            f"identities file {settings.identities_file} is invalid: {describe_failure(exc)}"
        ) from exc


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
    # Checks `earlyhelp serve` runs once before listening (a service's own config
    # files, say): one that raises stops the process with its message.
    startup_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    # The token issuer (intake) alone holds the private keys that sign bearer tokens.
    issues_tokens: bool = False
    # The service's own background workers, each made from the runtime when the app
    # starts: prepared before the relay and consumer, started after them, drained
    # (in reverse order) before them on shutdown.
    workers: Sequence[Callable[[Runtime], BackgroundWorker]] = ()
    # The service that decides when case records fall due under the retention schedule
    # (case plan), for `earlyhelp retention`: what is due, and what a legal hold keeps.
    case_records: CaseRecordsDecision | None = None

    def __post_init__(self) -> None:
        # Every consuming service offers its operators the dead-letter API; as one of
        # its routers, so that whatever builds its OpenAPI document sees it too.
        if self.consumes and dead_letters_router not in self.routers:
            object.__setattr__(self, "routers", (*self.routers, dead_letters_router))

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
        self.db = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            application_name=application_name(definition.name),
        )
        # Tells `earlyhelp rebuild` that the service runs (hub.liveness).
        self._serving = ServingMark(settings.database_url)
        topic = definition.topic
        self.store = EventStore(topic) if topic else None
        self.relay = OutboxRelay(self.db, settings) if topic else None
        self.consumer = (
            ProjectionConsumer(settings, self.db, definition.projections, definition.consumes)
            if definition.consumes
            else None
        )
        try:
            self.tokens = token_service(
                settings, issues=definition.issues_tokens, embedded=self.db.is_sqlite
            )
        except KeyConfigurationError as exc:
            raise StartupError(str(exc)) from exc
        self._writer: GroupCommitWriter | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers: list[BackgroundWorker] = []

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

    def degradation_checks(self) -> dict[str, Callable[[], str | None]]:
        """What /readyz reports as degraded: the consumer waiting for its infrastructure."""
        return {"consumer": self.consumer.degradation} if self.consumer is not None else {}

    def preflight(self) -> None:
        """Before listening: the database answers and is migrated, a broker answers,
        and the service's own start-up checks pass; raises StartupError otherwise.

        The waits are bounded by EARLYHELP_STARTUP_DATABASE_WAIT_S and
        EARLYHELP_STARTUP_BROKER_WAIT_S, so a misconfigured process exits (and its
        orchestrator reports it) instead of serving 503s forever.
        """
        self._wait_for_database()
        self._check_migrated()
        self._wait_for_broker()
        for name, check in self.definition.startup_checks.items():
            try:
                check()
            except Exception as exc:
                raise StartupError(f"{name}: {describe_failure(exc)}") from exc

    def _wait_for_database(self) -> None:
        wait_s = self.settings.startup_database_wait_s
        deadline = time.monotonic() + wait_s
        shown = self.db.url.render_as_string(hide_password=True)
        while True:
            remaining = deadline - time.monotonic()
            try:
                self._probe_database(max(remaining, 1.0))
                return
            except Exception as exc:
                if time.monotonic() + 0.2 >= deadline:
                    reason = describe_failure(getattr(exc, "orig", None) or exc)
                    raise StartupError(
                        f"database {shown} did not answer within {wait_s:g}s "
                        f"(EARLYHELP_DATABASE_URL, EARLYHELP_STARTUP_DATABASE_WAIT_S): {reason}"
                    ) from exc
                time.sleep(0.2)

    def _probe_database(self, timeout_s: float) -> None:
        if self.db.is_sqlite:
            self.db.check()
            return
        # A probe engine of its own: the pool's connections have no connect timeout,
        # and a firewalled host would otherwise hold the start for minutes.
        probe = create_engine(
            self.db.url,
            poolclass=NullPool,
            connect_args={"connect_timeout": max(1, math.ceil(timeout_s))},
            hide_parameters=True,
        )
        try:
            with probe.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finally:
            probe.dispose()

    def _check_migrated(self) -> None:
        with self.db.read() as conn:
            migrated = inspect(conn).has_table("alembic_version") and (
                conn.exec_driver_sql("SELECT version_num FROM alembic_version").first() is not None
            )
        if not migrated:
            shown = self.db.url.render_as_string(hide_password=True)
            raise StartupError(
                f"database {shown} is not migrated: run `earlyhelp migrate "
                f"{self.definition.name}` first"
            )

    def _wait_for_broker(self) -> None:
        wait_s = self.settings.startup_broker_wait_s
        deadline = time.monotonic() + wait_s
        # kafka-python logs every refused connection at ERROR: the one line below says it.
        kafka_logger = logging.getLogger("kafka")
        level = kafka_logger.level
        kafka_logger.setLevel(logging.CRITICAL)
        try:
            while True:
                try:
                    check_broker(self.settings)
                    return
                except Exception as exc:
                    if time.monotonic() + 0.2 >= deadline:
                        raise StartupError(
                            f"no Kafka broker answered at {self.settings.kafka_bootstrap_servers} "
                            f"within {wait_s:g}s (EARLYHELP_KAFKA_BOOTSTRAP_SERVERS, "
                            f"EARLYHELP_STARTUP_BROKER_WAIT_S): {describe_failure(exc)}"
                        ) from exc
                    time.sleep(0.2)
        finally:
            kafka_logger.setLevel(level)

    def start(self) -> None:
        self._serving.acquire()
        try:
            self._workers = [make(self) for make in self.definition.workers]
            for worker in self._workers:
                worker.prepare()
        except BaseException:
            # Nothing runs yet: the service is not serving, so a rebuild may go ahead.
            self._workers.clear()
            self._serving.release()
            raise
        self._start_hub_workers()
        for worker in self._workers:
            worker.start()

    def _start_hub_workers(self) -> None:
        workers: list[tuple[str, Callable[[threading.Event], Any]]] = []
        if self.relay is not None:
            workers.append(("outbox-relay", self.relay.run))
        if self.consumer is not None:
            workers.append(("consumer", self.consumer.run))
        workers.append(("identities", self.tokens.identities.run))
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
        """Drain within `drain_timeout_s` (the relay's flush gets at least 5 s of its own).

        Called once uvicorn has answered every request in flight. The consumer
        finishes the record it is applying, commits the offsets of every record it
        applied and leaves its group; queued writes commit; the relay publishes
        every committed event still in the outbox and removes the acknowledged rows;
        spans not yet exported are flushed. The service's own workers stop first, so
        none waits on a consumer that has gone.
        """
        for worker in reversed(self._workers):
            worker.stop()
        self._workers.clear()
        self._stop.set()
        if self.relay is not None:
            self.relay.notify()
        deadline = time.monotonic() + drain_timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("still running after %gs: %s", drain_timeout_s, ", ".join(stuck))
        relay_stuck = f"{self.definition.name}-outbox-relay" in stuck
        self._threads.clear()
        if self._writer is not None:
            self._writer.close()
        if self.relay is not None and relay_stuck:
            # A relay thread still publishing must not be joined by a second publisher;
            # what it has not removed from the outbox is sent again at next start.
            log.warning("stopping with the relay still publishing")
        elif self.relay is not None:
            drain_s = max(deadline - time.monotonic(), 5.0)
            if not self.relay.drain(drain_s):
                log.warning("stopping with events still in the outbox; they are sent at next start")
            self.relay.close()
        self.tokens.close()
        self.db.dispose()
        self._serving.release()
        _flush_spans()


def _flush_spans(timeout_ms: int = 2000) -> None:
    """Export the spans still batched: uvicorn ends the process by re-raising SIGTERM,
    so the SDK's exit handler would not run."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        try:
            flush(timeout_ms)
        except Exception as exc:
            log.warning("could not export the last spans: %s", exc)


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
        reload_identities_on_sighup(runtime.tokens.identities)
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
        degradation_checks=runtime.degradation_checks(),
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
