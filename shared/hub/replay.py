"""Rebuilding projections and republishing a store: the two recovery commands.

A rebuild forgets a projection (rows, inbox, checkpoints) and replays history into it:
the service's own store and every consumed topic from the beginning to its high
watermark, merged in the order the events happened (a topic's records and the
store's events are each already in that order), so that an allocation replayed from
the store never lands before the triage that opened its case. The service must be
stopped: `hub.liveness` refuses while it runs. A republish queues stored events in
the outbox again; consumers' inboxes make the second copies harmless.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import func, select

from hub.consumer import ProjectionConsumer
from hub.contracts.envelope import UndecodableMessage, from_kafka
from hub.db import Database
from hub.envelopes import meta_of_recorded
from hub.kafka import new_reader
from hub.liveness import service_stopped
from hub.outbox import OutboxRelay
from hub.projections import Projection
from hub.service import ServiceDefinition
from hub.settings import HubSettings
from hub.store import EventStore, RecordedEvent
from hub.tables import outbox

log = logging.getLogger(__name__)

_BATCH = 500
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def rebuild_projections(
    definition: ServiceDefinition, settings: HubSettings, names: Sequence[str]
) -> dict[str, int]:
    """Rebuild the named projections; returns how many events each applied.

    Raises hub.liveness.ServiceRunning, changing nothing, while the service runs.
    """
    projections = [definition.projection(name) for name in names]
    with service_stopped(settings.database_url, definition.name):
        db = Database(settings.database_url)
        try:
            with db.write() as conn:
                for projection in projections:
                    projection.reset(conn)
            records = _read_topics(settings, definition.consumes) if definition.consumes else []
            return _replay(db, settings, definition, projections, records)
        finally:
            db.dispose()


def _replay(
    db: Database,
    settings: HubSettings,
    definition: ServiceDefinition,
    projections: Sequence[Projection],
    records: list[ConsumerRecord],
) -> dict[str, int]:
    applied = {p.name: 0 for p in projections}
    handler = ProjectionConsumer(settings, db, projections, definition.consumes)
    stored = ((event.occurred_at, 0, event) for event in _stored(db))
    consumed = sorted(
        ((_time_of(record), 1, record) for record in records),
        key=lambda item: item[0],
    )
    pending: list[RecordedEvent] = []

    def apply_stored() -> None:
        with db.write() as conn:
            for event in pending:
                followers = [p for p in projections if p.handles(event.event_type)]
                data, meta = event.decode(), meta_of_recorded(event, definition.name)
                for projection in followers:
                    applied[projection.name] += projection.apply(conn, data, meta)
        pending.clear()

    for _, kind, item in heapq.merge(stored, consumed, key=lambda entry: (entry[0], entry[1])):
        if kind == 0:
            if any(p.handles(item.event_type) for p in projections):
                pending.append(item)
            if len(pending) >= _BATCH:
                apply_stored()
            continue
        if pending:
            apply_stored()
        for name in handler.handle(item):
            applied[name] += 1
    if pending:
        apply_stored()
    return applied


def _stored(db: Database) -> Iterator[RecordedEvent]:
    position = 0
    while True:
        with db.read() as conn:
            batch = EventStore.read_all(conn, after_position=position, limit=_BATCH)
        if not batch:
            return
        yield from batch
        position = batch[-1].position


def _time_of(record: ConsumerRecord) -> datetime:
    try:
        return from_kafka(record.key, record.value, list(record.headers or [])).time
    except UndecodableMessage:
        return _EARLIEST  # first, straight to the DLQ, as the live consumer would


def _read_topics(
    settings: HubSettings, topics: Sequence[str], idle_timeout_s: float = 10.0
) -> list[ConsumerRecord]:
    """Every record of each partition from its start to its high watermark."""
    reader = new_reader(settings)
    try:
        partitions = _partitions(reader, topics)
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        remaining = set(partitions)
        records: list[ConsumerRecord] = []
        last_progress = time.monotonic()
        while remaining:
            batch = reader.poll(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                last_progress = time.monotonic()
            for partition in list(remaining):
                # end_offsets is unreliable on Tansu; the fetch's high watermark is not.
                highwater = reader.highwater(partition)
                if highwater is not None and reader.position(partition) >= highwater:
                    remaining.discard(partition)
            if remaining and time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"replay made no progress on {sorted(map(str, remaining))}")
        return records
    finally:
        reader.close()


def _partitions(reader, topics: Sequence[str]) -> list[TopicPartition]:
    partitions = []
    for topic in topics:
        deadline = time.monotonic() + 10
        numbers = reader.partitions_for_topic(topic)
        while numbers is None and time.monotonic() < deadline:
            reader.topics()  # forces a metadata refresh
            time.sleep(0.1)
            numbers = reader.partitions_for_topic(topic)
        partitions += [TopicPartition(topic, n) for n in sorted(numbers or ())]
    return partitions


@dataclass(frozen=True)
class Republished:
    queued: int
    # Of those, still in the outbox when the command stopped waiting.
    left: int
    # Sent by the service's running relay rather than by this command's: on PostgreSQL one
    # relay leads per database, and while the service runs that is the service's.
    by_running_relay: bool


def republish(
    definition: ServiceDefinition,
    settings: HubSettings,
    from_position: int,
    timeout_s: float = 60.0,
) -> Republished:
    """Queue the store's events from a position in the outbox and see them sent, by this
    command's relay or, while the service runs, by the service's leading relay."""
    topic = definition.topic
    if topic is None:
        raise SystemExit(f"{definition.name} produces no events to republish")
    db = Database(settings.database_url)
    relay = OutboxRelay(db, settings)
    try:
        with db.write() as conn:
            store = EventStore(topic)
            queued = store.enqueue_from(conn, from_position)
            last_position = store.last_position(conn)
        deadline = time.monotonic() + timeout_s
        drained = relay.drain(timeout_s)
        # Who sent them is who led, not whether rows were left when drain() returned: the
        # leader may have sent them all by the time this command counts.
        by_running_relay = drained and not relay.leads
        # Only what this command queued counts: a live service may be adding more.
        queued_here = (
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.position.between(from_position, last_position))
        )
        with db.read() as conn:
            left = conn.execute(queued_here).scalar_one()
        # drain() returns at once when another relay leads: wait for that one to send them.
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            with db.read() as conn:
                left = conn.execute(queued_here).scalar_one()
        return Republished(queued, left, by_running_relay)
    finally:
        relay.close()
        db.dispose()
