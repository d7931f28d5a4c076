"""Dead-letter queues: what one service's hold, and sending records back through its consumer.

A service's consumer dead-letters to `<topic>.dlq` for each topic it consumes.
Several services consume one topic and share its DLQ, so a service's records
are those whose `dlq_consumer` header names its consumer group. A redrive
hands a record, as it first arrived (original topic, partition, offset and
headers), to the consumer's own code path, `ProjectionConsumer.handle`, so the
inbox works as usual: an event every following projection has already applied
has no second effect, a record that still fails is dead-lettered again (a new
DLQ record), and while the database is away nothing is redriven.

Nothing here moves offsets or deletes DLQ records (Kafka cannot delete one
record): a record's status says whether its event has since been applied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import select

from hub.consumer import ProjectionConsumer
from hub.contracts.topics import dlq_topic
from hub.db import Database
from hub.kafka import ensure_topics, new_reader
from hub.projections import Projection
from hub.settings import HubSettings
from hub.tables import inbox

Status = Literal["applied", "not applied", "undecodable"]
Outcome = Literal["applied", "already applied", "dead-lettered again", "undecodable: not redriven"]

_DLQ_HEADER_PREFIX = "dlq_"


@dataclass(frozen=True)
class DeadLetter:
    """One record in a DLQ, described without its data (which may be a child's record)."""

    id: str  # "<dlq topic>:<partition>:<offset>"
    event_id: str | None
    event_type: str | None
    subject: str | None
    original_topic: str
    original_partition: int
    original_offset: int
    reason: str
    attempts: int
    failed_at: str | None
    record: ConsumerRecord

    @property
    def original(self) -> ConsumerRecord:
        """The record as the consumer first received it: its place and its own headers."""
        return self.record._replace(
            topic=self.original_topic,
            partition=self.original_partition,
            offset=self.original_offset,
            headers=[
                (name, value)
                for name, value in self.record.headers or []
                if not name.startswith(_DLQ_HEADER_PREFIX)
            ],
        )


@dataclass(frozen=True)
class Redriven:
    id: str
    event_id: str | None
    outcome: Outcome


class UnknownDeadLetter(LookupError):
    """An id that names no record in this service's DLQs."""


class DeadLetters:
    """One service's DLQs: read them, say what became of each record, send records back."""

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

    def read(self) -> list[DeadLetter]:
        """Every record this service dead-lettered, oldest first within each DLQ partition."""
        letters = []
        for record in _read_topics(self._settings, [dlq_topic(t) for t in self._topics]):
            headers = {name: value for name, value in record.headers or []}
            if _text(headers.get("dlq_consumer")) != self._settings.consumer_group:
                continue
            letters.append(
                DeadLetter(
                    id=f"{record.topic}:{record.partition}:{record.offset}",
                    event_id=_text(headers.get("ce_id")),
                    event_type=_text(headers.get("ce_type")),
                    subject=_text(headers.get("ce_subject")),
                    original_topic=_text(headers.get("dlq_original_topic")) or "",
                    original_partition=int(_text(headers.get("dlq_original_partition")) or -1),
                    original_offset=int(_text(headers.get("dlq_original_offset")) or -1),
                    reason=_text(headers.get("dlq_reason")) or "",
                    attempts=int(_text(headers.get("dlq_attempts")) or 0),
                    failed_at=_text(headers.get("dlq_failed_at")),
                    record=record,
                )
            )
        return letters

    def statuses(self, letters: Sequence[DeadLetter]) -> dict[str, Status]:
        """Per DLQ record: applied when every projection following its type has its event."""
        followers = {
            letter.id: [p.name for p in self._projections if p.handles(letter.event_type or "")]
            for letter in letters
        }
        event_ids = {letter.event_id for letter in letters if letter.event_id}
        with self._db.read() as conn:
            seen = set(
                conn.execute(
                    select(inbox.c.projection, inbox.c.event_id).where(
                        inbox.c.event_id.in_(event_ids)
                    )
                ).all()
            )
        statuses: dict[str, Status] = {}
        for letter in letters:
            names = followers[letter.id]
            if not letter.event_id or not names:
                statuses[letter.id] = "undecodable"
            elif all((name, letter.event_id) in seen for name in names):
                statuses[letter.id] = "applied"
            else:
                statuses[letter.id] = "not applied"
        return statuses

    def redrive(self, ids: Sequence[str] | None) -> list[Redriven]:
        """Send the chosen records (all of them when `ids` is None) back, each event once.

        Raises UnknownDeadLetter, before anything is redriven, for an id that is
        not this service's; InfrastructureUnavailable (from the consumer) when
        the database or broker fails, leaving the rest for another time.
        """
        letters = self.read()
        by_id = {letter.id: letter for letter in letters}
        if ids is not None:
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise UnknownDeadLetter(", ".join(unknown))
            chosen = [by_id[i] for i in dict.fromkeys(ids)]
        else:
            chosen = letters
        consumer = ProjectionConsumer(self._settings, self._db, self._projections, self._topics)
        statuses = self.statuses(chosen)
        results: list[Redriven] = []
        handled: set[str] = set()
        try:
            for letter in chosen:
                outcome: Outcome
                if statuses[letter.id] == "undecodable" or letter.event_id is None:
                    outcome = "undecodable: not redriven"
                elif letter.event_id in handled or statuses[letter.id] == "applied":
                    # The same event dead-lettered more than once goes back once.
                    outcome = "already applied"
                else:
                    consumer.handle(letter.original)
                    handled.add(letter.event_id)
                    applied = self.statuses([letter])[letter.id] == "applied"
                    outcome = "applied" if applied else "dead-lettered again"
                results.append(Redriven(letter.id, letter.event_id, outcome))
        finally:
            consumer.close()
        return results


def _partition_numbers(reader: KafkaConsumer, topic: str, settings: HubSettings) -> set[int]:
    """A topic's partitions; a broker's metadata can lag behind a topic just created."""
    deadline = time.monotonic() + settings.kafka_request_timeout_ms / 1000
    while not (numbers := reader.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker gives no partitions for {topic}")
        time.sleep(0.1)
        reader.topics()  # asks the broker again
    return numbers


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value is not None else None


def _read_topics(settings: HubSettings, topics: Sequence[str]) -> list[ConsumerRecord]:
    """Every record of the topics, from the start to their high watermarks."""
    # The DLQs are hub topics anyway; made sure of here, they always have partitions.
    ensure_topics(settings, topics)
    reader = new_reader(settings)
    try:
        partitions = [
            TopicPartition(topic, number)
            for topic in topics
            for number in sorted(_partition_numbers(reader, topic, settings))
        ]
        if not partitions:
            return []
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        remaining = set(partitions)
        deadline = time.monotonic() + settings.kafka_request_timeout_ms / 1000
        while remaining:
            batch = reader.poll(timeout_ms=200)
            for batch_records in batch.values():
                records.extend(batch_records)
            if batch:
                deadline = time.monotonic() + settings.kafka_request_timeout_ms / 1000
            for partition in list(remaining):
                # end_offsets is unreliable on Tansu; the fetch's high watermark is not.
                highwater = reader.highwater(partition)
                if highwater is not None and reader.position(partition) >= highwater:
                    remaining.discard(partition)
            if remaining and time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(map(str, remaining))} to the end")
        return records
    finally:
        reader.close()
