"""The consumer runner: one Kafka consumer group per service feeding its projections.

For each record: decode the CloudEvent, apply it to every projection that
follows its type in one database transaction (inbox + read model + checkpoint),
and only then commit the offset. A record that cannot be decoded, or whose
handling still fails after bounded retries, is published to `<topic>.dlq` with
the error in its headers before its offset is committed: the consumer carries
on and nothing is skipped silently.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from opentelemetry import trace
from prometheus_client import Counter, Gauge

from hub.contracts.envelope import Envelope, UndecodableMessage, from_kafka
from hub.contracts.topics import dlq_topic
from hub.db import Database
from hub.envelopes import meta_of
from hub.kafka import ensure_topics, new_group_consumer, new_producer
from hub.observability import context_from_traceparent, tracer
from hub.projections import Projection
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

_tracer = tracer(__name__)


class DeadLetter(Exception):
    """A record that will never succeed here; it goes to the DLQ with this reason."""


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
        self._close_consumer()
        if self._dlq_producer is not None:
            self._dlq_producer.close(timeout=5)

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
        batch = consumer.poll(timeout_ms=200)
        self.ready.set()
        done: dict[TopicPartition, OffsetAndMetadata] = {}
        for partition, records in batch.items():
            for record in records:
                if stop.is_set():
                    break
                self.handle(record)
                done[partition] = OffsetAndMetadata(record.offset + 1, "", -1)
        if done:
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

    def handle(self, record: ConsumerRecord) -> list[str]:
        """Apply one record, or dead-letter it; returns the projections it changed.

        Never raises for bad data: that is what the DLQ is for.
        """
        origin = f"{record.topic}/{record.partition}"
        try:
            envelope = from_kafka(record.key, record.value, list(record.headers or []))
        except UndecodableMessage as exc:
            self._dead_letter(record, f"undecodable: {exc}", attempts=1)
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
        except UndecodableMessage as exc:
            self._dead_letter(record, f"invalid data: {exc}", attempts=1)
            return []
        meta = meta_of(envelope, origin=origin, position=record.offset)
        attempts = self._settings.consumer_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                with self._db.write() as conn:
                    applied = [p.name for p in followers if p.apply(conn, data, meta)]
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
                HANDLER_FAILURES.labels(self._service, record.topic).inc()
                log.warning(
                    "applying %s failed (attempt %d of %d): %s",
                    envelope.type,
                    attempt,
                    attempts,
                    exc,
                    extra={"event_id": envelope.id, "error_type": type(exc).__name__},
                )
                if attempt == attempts:
                    self._dead_letter(
                        record,
                        f"{type(exc).__name__}: {exc}",
                        attempts=attempts,
                        stack=traceback.format_exc(limit=5),
                    )
                    return []
                time.sleep(self._settings.consumer_retry_backoff_ms / 1000 * 2 ** (attempt - 1))
        return []

    def _dead_letter(
        self, record: ConsumerRecord, reason: str, *, attempts: int, stack: str | None = None
    ) -> None:
        """Publish the record unchanged to its DLQ; blocks (retrying) until the broker has it."""
        headers = list(record.headers or [])
        headers += [
            ("dlq_reason", reason.encode("utf-8", "replace")[:4000]),
            ("dlq_consumer", self._settings.consumer_group.encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        if stack:
            headers.append(("dlq_stack", stack.encode("utf-8", "replace")[:8000]))
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
