"""The consumer runner: one Kafka consumer group per service feeding its projections.

For each record: decode the CloudEvent, apply it to every projection that
follows its type in one database transaction (inbox + read model + checkpoint),
and only then commit the offset.

Failures are of two kinds. When the hub's own infrastructure fails (the
database unreachable or locked, a timeout, the broker), the record is not at
fault: its partition is paused at that record and tried again, with backoff,
for as long as it takes, while `/readyz` reports the service degraded. A
failure that would recur with the same record (undecodable, invalid data, a
handler refusing it) sends the record to `<topic>.dlq` with the reason in its
headers, after bounded attempts, before its offset is committed: the consumer
carries on and nothing is skipped silently.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy import exc as sa_exc

from hub import family_order
from hub.contracts.envelope import Envelope, UndecodableMessage, from_kafka
from hub.contracts.topics import dlq_topic
from hub.db import Database
from hub.envelopes import meta_of
from hub.kafka import ensure_topics, new_group_consumer, new_producer
from hub.observability import context_from_traceparent, tracer
from hub.privacy import describe_error, error_stack
from hub.projections import Projection
from hub.provenance import provenance_problem
from hub.settings import HubSettings

log = logging.getLogger(__name__)

CONSUMED = Counter(
    "earlyhelp_consumer_events_total",
    "Records consumed, by outcome (applied, duplicate, ignored, dead_lettered)",
    ["service", "topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "earlyhelp_consumer_lag",
    "Records between the consumer's position and the partition's high watermark",
    ["service", "topic", "partition"],
)
HANDLER_FAILURES = Counter(
    "earlyhelp_consumer_handler_failures_total",
    "Failed attempts at applying a record (each retry counts)",
    ["service", "topic"],
)

INFRASTRUCTURE_WAITS = Counter(
    "earlyhelp_consumer_infrastructure_waits_total",
    "Attempts at a record that failed because the hub's own infrastructure did "
    "(the partition waits and tries again; nothing goes to the DLQ)",
    ["service", "topic", "error"],
)
WAITING_PARTITIONS = Gauge(
    "earlyhelp_consumer_waiting_partitions",
    "Partitions paused until the database or broker answers again",
    ["service"],
)

_tracer = tracer(__name__)

# SQLite's primary result codes that say the database, not the record, failed:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL, NOTADB.
_TRANSIENT_SQLITE_CODES = frozenset({5, 6, 7, 8, 10, 13, 14, 15, 26})


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is the hub's infrastructure's rather than the record's.

    Transient: the broker, timeouts, lost or refused database connections, and
    what PostgreSQL's drivers call operational errors (connection failures, an
    administrator's shutdown, deadlocks, lock and statement timeouts); on SQLite
    only the result codes of a busy, locked, full or unreadable file, since its
    OperationalError also covers bugs such as a missing table or bad SQL.
    """
    infrastructure = (
        KafkaError,
        TimeoutError,
        ConnectionError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
    )
    if isinstance(exc, infrastructure):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if isinstance(exc.orig, sqlite3.Error):
        code = getattr(exc.orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _TRANSIENT_SQLITE_CODES
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)


def error_name(exc: BaseException) -> str:
    """An exception's class, and its driver's for database errors: never its text,
    which can quote the statement's parameters (a child's details)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}({type(exc.orig).__name__})"
    return type(exc).__name__


class InfrastructureUnavailable(Exception):
    """Applying a record failed because the database or broker did: try it again later."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(error_name(cause))
        self.cause = cause


@dataclass
class _Wait:
    """A partition paused at a record until the infrastructure answers again."""

    since: float
    retry_at: float
    backoff_s: float
    error: str


class ProjectionConsumer:
    def __init__(
        self,
        settings: HubSettings,
        db: Database,
        projections: Sequence[Projection],
        topics: Sequence[str],
    ) -> None:
        self._settings = settings
        self._db = db
        self._projections = tuple(projections)
        self._topics = tuple(topics)
        self._service = settings.service_name
        self._consumer: KafkaConsumer | None = None
        self._dlq_producer: KafkaProducer | None = None
        self.ready = threading.Event()
        # Failure counters exist at 0 from the start, so dashboards and alerts see
        # "none yet" rather than no data.
        for topic in self._topics:
            CONSUMED.labels(self._service, topic, "dead_lettered")
            HANDLER_FAILURES.labels(self._service, topic)
        self._waiting: dict[TopicPartition, _Wait] = {}
        self._waiting_lock = threading.Lock()
        self._after_apply: list[Callable[[], None]] = []

    def after_apply(self, listener: Callable[[], None]) -> None:
        """Call `listener` (quick, never raising) each time a record's effects commit, so
        work that follows from them (notifications' fan-out) need not wait for a poll."""
        self._after_apply.append(listener)

    def degradation(self) -> str | None:
        """Why the consumer is not keeping up, for /readyz; None while it is."""
        with self._waiting_lock:
            if not self._waiting:
                return None
            oldest = min(wait.since for wait in self._waiting.values())
            errors = sorted({wait.error for wait in self._waiting.values()})
            count = len(self._waiting)
        return (
            f"waiting for the database or broker: {count} partition(s) paused for "
            f"{time.monotonic() - oldest:.0f}s ({', '.join(errors)})"
        )

    def run(self, stop: threading.Event) -> None:
        backoff_s = 0.2
        while not stop.is_set():
            try:
                if self._consumer is None:
                    self._consumer = new_group_consumer(self._settings, self._topics)
                self._poll_once(stop)
                backoff_s = 0.2
            except KafkaError as exc:
                log.warning("consumer lost the broker; retrying in %.1fs: %s", backoff_s, exc)
                self._close_consumer()
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
        self._settle_membership()
        self._forget_waits(lambda _partition: True)
        self.close()

    def close(self) -> None:
        """Release the Kafka clients (after `run`, or after calling `handle` directly)."""
        self._close_consumer()
        if self._dlq_producer is not None:
            self._dlq_producer.close(timeout=5)
            self._dlq_producer = None

    def _settle_membership(self) -> None:
        """Finish a group join in progress before leaving the group.

        A member that leaves half-way through a join leaves Tansu's group unable
        to hand partitions to the next member; a rebalance that completes first
        costs at most one session timeout.
        """
        consumer = self._consumer
        if consumer is None:
            return
        deadline = time.monotonic() + self._settings.kafka_session_timeout_ms / 1000 * 2
        try:
            while not consumer.assignment() and time.monotonic() < deadline:
                # Records polled here are not handled: their offsets stay uncommitted
                # and the next member reads them.
                consumer.poll(timeout_ms=100, update_offsets=False)
        except KafkaError as exc:
            log.debug("could not settle the group before leaving: %s", exc)

    def _poll_once(self, stop: threading.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        self._resume_due(consumer)
        batch = consumer.poll(timeout_ms=200)
        self.ready.set()
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        waiting: set[TopicPartition] = set()
        for partition, records in batch.items():
            for record in records:
                if stop.is_set():
                    break
                try:
                    self.handle(record)
                except InfrastructureUnavailable as exc:
                    # Not the record's fault: nothing past it is committed, and the
                    # partition is fetched from it again once the wait is over.
                    self._wait(consumer, partition, record, exc)
                    waiting.add(partition)
                    break
                done[partition] = OffsetAndMetadata(record.offset + 1, "", -1)
        if done:
            self._forget_waits(lambda p: p in done and p not in waiting, recovered=True)
            try:
                consumer.commit(done)
            except CommitFailedError as exc:
                # The group rebalanced mid-batch: another member gets these records
                # again and the inbox makes the second delivery harmless.
                log.info("offset commit lost to a rebalance: %s", exc)
        for partition in batch:
            highwater = consumer.highwater(partition)
            if highwater is not None:
                lag = highwater - consumer.position(partition)
                CONSUMER_LAG.labels(self._service, partition.topic, partition.partition).set(lag)

    def _wait(
        self,
        consumer: KafkaConsumer,
        partition: TopicPartition,
        record: ConsumerRecord,
        failure: InfrastructureUnavailable,
    ) -> None:
        """Pause the partition at `record` and schedule the next attempt, with backoff.

        Paused, the partition is not fetched while the consumer keeps polling, so
        the member stays in its group however long the outage lasts.
        """
        consumer.seek(partition, record.offset)
        consumer.pause(partition)
        now = time.monotonic()
        first_backoff_s = max(self._settings.consumer_retry_backoff_ms / 1000, 0.01)
        max_backoff_s = self._settings.consumer_wait_backoff_max_ms / 1000
        error = str(failure)
        with self._waiting_lock:
            wait = self._waiting.get(partition)
            started = wait is None
            if wait is None:
                wait = self._waiting[partition] = _Wait(now, now, first_backoff_s / 2, error)
            wait.backoff_s = min(wait.backoff_s * 2, max_backoff_s)
            wait.retry_at = now + wait.backoff_s
            wait.error = error
            WAITING_PARTITIONS.labels(self._service).set(len(self._waiting))
        INFRASTRUCTURE_WAITS.labels(self._service, partition.topic, error).inc()
        log.log(
            logging.WARNING if started else logging.INFO,
            "infrastructure unavailable (%s): partition paused, next attempt in %.1fs",
            error,
            wait.backoff_s,
            extra={
                "topic": partition.topic,
                "partition": partition.partition,
                "offset": record.offset,
            },
        )

    def _resume_due(self, consumer: KafkaConsumer) -> None:
        """Resume the paused partitions whose next attempt is due."""
        with self._waiting_lock:
            if not self._waiting:
                return
        assigned = consumer.assignment()
        # A partition handed to another member by a rebalance is that member's to retry.
        self._forget_waits(lambda partition: partition not in assigned)
        now = time.monotonic()
        with self._waiting_lock:
            due = [p for p, wait in self._waiting.items() if wait.retry_at <= now]
        if due:
            consumer.resume(*due)

    def _forget_waits(
        self, which: Callable[[TopicPartition], bool], *, recovered: bool = False
    ) -> None:
        with self._waiting_lock:
            ended = {p: w for p, w in self._waiting.items() if which(p)}
            for partition in ended:
                del self._waiting[partition]
            WAITING_PARTITIONS.labels(self._service).set(len(self._waiting))
        if recovered:
            for partition, wait in ended.items():
                log.info(
                    "infrastructure back: partition resumed after %.1fs",
                    time.monotonic() - wait.since,
                    extra={"topic": partition.topic, "partition": partition.partition},
                )

    def handle(self, record: ConsumerRecord) -> list[str]:
        """Apply one record, or dead-letter it; returns the projections it changed.

        Never raises for bad data: that is what the DLQ is for. Raises
        InfrastructureUnavailable when the database or broker failed: the record
        was not applied and must be handled again.
        """
        origin = f"{record.topic}/{record.partition}"
        try:
            envelope = from_kafka(record.key, record.value, list(record.headers or []))
        except UndecodableMessage as exc:
            self._dead_letter(record, f"undecodable: {exc}", attempts=1)
            return []
        if distrust := provenance_problem(record.topic, envelope):
            self._dead_letter(record, f"untrusted: {distrust}", attempts=1)
            return []
        followers = [p for p in self._projections if p.handles(envelope.type)]
        if not followers:
            CONSUMED.labels(self._service, record.topic, "ignored").inc()
            return []
        context = context_from_traceparent(envelope.traceparent, envelope.tracestate)
        with _tracer.start_as_current_span(
            f"{record.topic} process",
            context=context,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self._settings.consumer_group,
                "cloudevents.event_id": envelope.id,
                "cloudevents.event_type": envelope.type,
            },
        ):
            return self._apply_with_retries(record, envelope, followers, origin)

    def _apply_with_retries(
        self,
        record: ConsumerRecord,
        envelope: Envelope,
        followers: list[Projection],
        origin: str,
    ) -> list[str]:
        try:
            data = envelope.decode_data()
            meta = meta_of(envelope, origin=origin, position=record.offset)
        except UndecodableMessage as exc:
            self._dead_letter(record, f"invalid data: {exc}", attempts=1)
            return []
        attempts = self._settings.consumer_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._db.write() as conn:
                    applied = [p.name for p in followers if p.apply(conn, data, meta)]
                    if applied:
                        # The service's next event of the family follows what it knows now.
                        family_order.advance(
                            conn, meta.family_id, meta.event_id, meta.occurred_at, consumed=True
                        )
                if applied:
                    for listener in self._after_apply:
                        listener()
                outcome = "applied" if applied else "duplicate"
                CONSUMED.labels(self._service, record.topic, outcome).inc()
                # Inside the record's span: the line carries the producer's trace id.
                log.debug(
                    "%s %s",
                    outcome,
                    envelope.type,
                    extra={
                        "event_id": envelope.id,
                        "topic": record.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "projections": applied,
                    },
                )
                return applied
            except Exception as exc:
                if is_transient(exc):
                    raise InfrastructureUnavailable(exc) from exc
                HANDLER_FAILURES.labels(self._service, record.topic).inc()
                log.warning(
                    "applying %s failed (attempt %d of %d): %s",
                    envelope.type,
                    attempt,
                    attempts,
                    describe_error(exc),
                    extra={"event_id": envelope.id, "error_type": type(exc).__name__},
                )
                if attempt == attempts:
                    self._dead_letter(
                        record,
                        describe_error(exc),
                        attempts=attempts,
                        stack=error_stack(exc, limit=5),
                    )
                    return []
                time.sleep(self._settings.consumer_retry_backoff_ms / 1000 * 2 ** (attempt - 1))
        return []

    def _dead_letter(
        self, record: ConsumerRecord, reason: str, *, attempts: int, stack: str | None = None
    ) -> None:
        """Publish the record unchanged to its DLQ; blocks (retrying) until the broker has it."""
        headers = list(record.headers or []) + dead_letter_headers(
            record,
            consumer_group=self._settings.consumer_group,
            reason=reason,
            attempts=attempts,
            stack=stack,
        )
        target = dlq_topic(record.topic)
        backoff_s = 0.2
        while True:
            try:
                if self._dlq_producer is None:
                    ensure_topics(self._settings, [dlq_topic(t) for t in self._topics])
                    self._dlq_producer = new_producer(self._settings, "dlq")
                self._dlq_producer.send(
                    target, key=record.key, value=record.value, headers=headers
                ).get(timeout=self._settings.kafka_request_timeout_ms / 1000)
                break
            except KafkaError as exc:
                log.warning("could not dead-letter yet; retrying: %s", exc)
                if self._dlq_producer is not None:
                    self._dlq_producer.close(timeout=1)
                    self._dlq_producer = None
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
        CONSUMED.labels(self._service, record.topic, "dead_lettered").inc()
        log.error(
            "record dead-lettered to %s: %s",
            target,
            reason,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("closing the consumer: %s", exc)
            self._consumer = None


def dead_letter_headers(
    record: ConsumerRecord,
    *,
    consumer_group: str,
    reason: str,
    attempts: int,
    stack: str | None = None,
) -> list[tuple[str, bytes]]:
    """The `dlq_*` headers added to a dead-lettered record (see docs/operations.md).

    Everything written here is readable by whoever reads the DLQ: it must carry
    no personal value, only where the record came from and why it failed.
    """
    headers = [
        ("dlq_reason", reason.encode("utf-8", "replace")[:4000]),
        ("dlq_consumer", consumer_group.encode()),
        ("dlq_original_topic", record.topic.encode()),
        ("dlq_original_partition", str(record.partition).encode()),
        ("dlq_original_offset", str(record.offset).encode()),
        ("dlq_attempts", str(attempts).encode()),
        ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
    ]
    if stack:
        headers.append(("dlq_stack", stack.encode("utf-8", "replace")[:8000]))
    return headers
