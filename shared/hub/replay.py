"""Rebuilding projections and republishing a store: the two recovery commands.

A rebuild forgets a projection (rows, inbox, checkpoints), replays the service's
own store, then reads every consumed topic from the beginning to its high
watermark. Run it with the service stopped, so that live records do not
interleave with the replay. A republish queues stored events in the outbox
again; consumers' inboxes make the second copies harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kafka import TopicPartition
from sqlalchemy import func, select

from hub.consumer import ProjectionConsumer
from hub.db import Database
from hub.envelopes import meta_of_recorded
from hub.kafka import new_reader
from hub.outbox import OutboxRelay
from hub.projections import Projection
from hub.service import ServiceDefinition
from hub.settings import HubSettings
from hub.store import EventStore
from hub.tables import outbox

log = logging.getLogger(__name__)

_BATCH = 500


def rebuild_projections(
    definition: ServiceDefinition, settings: HubSettings, names: Sequence[str]
) -> dict[str, int]:
    """Rebuild the named projections; returns how many events each applied."""
    projections = [definition.projection(name) for name in names]
    db = Database(settings.database_url)
    try:
        with db.write() as conn:
            for projection in projections:
                projection.reset(conn)
        applied = dict.fromkeys(names, 0)
        for name, count in _replay_store(db, definition.name, projections).items():
            applied[name] += count
        if definition.consumes:
            for name, count in _replay_topics(
                db, settings, projections, definition.consumes
            ).items():
                applied[name] += count
        return applied
    finally:
        db.dispose()


def _replay_store(db: Database, service: str, projections: Sequence[Projection]) -> dict[str, int]:
    applied = {p.name: 0 for p in projections}
    position = 0
    while True:
        with db.read() as conn:
            batch = EventStore.read_all(conn, after_position=position, limit=_BATCH)
        if not batch:
            return applied
        with db.write() as conn:
            for event in batch:
                followers = [p for p in projections if p.handles(event.event_type)]
                if not followers:
                    continue
                data, meta = event.decode(), meta_of_recorded(event, service)
                for projection in followers:
                    applied[projection.name] += projection.apply(conn, data, meta)
        position = batch[-1].position


def _replay_topics(
    db: Database,
    settings: HubSettings,
    projections: Sequence[Projection],
    topics: Sequence[str],
    idle_timeout_s: float = 10.0,
) -> dict[str, int]:
    """Read each partition from its start to its high watermark through the live code path."""
    handler = ProjectionConsumer(settings, db, projections, topics)
    reader = new_reader(settings)
    try:
        partitions = _partitions(reader, topics)
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        remaining = set(partitions)
        applied = {p.name: 0 for p in projections}
        last_progress = time.monotonic()
        while remaining:
            batch = reader.poll(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    for name in handler.handle(record):
                        applied[name] += 1
            if batch:
                last_progress = time.monotonic()
            for partition in list(remaining):
                # end_offsets is unreliable on Tansu; the fetch's high watermark is not.
                highwater = reader.highwater(partition)
                if highwater is not None and reader.position(partition) >= highwater:
                    remaining.discard(partition)
            if remaining and time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"replay made no progress on {sorted(map(str, remaining))}")
        return applied
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


def republish(
    definition: ServiceDefinition,
    settings: HubSettings,
    from_position: int,
    timeout_s: float = 60.0,
) -> tuple[int, int]:
    """Queue the store's events from a position and send them; returns (queued, left)."""
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
        relay.drain(timeout_s)
        # Only what this command queued counts: a live service may be adding more.
        with db.read() as conn:
            left = conn.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.position.between(from_position, last_position))
            ).scalar_one()
        return queued, left
    finally:
        relay.close()
        db.dispose()
