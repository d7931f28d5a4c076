"""The database going away under a running consumer: records wait, none is dead-lettered.

The outage is real: on PostgreSQL the test's database refuses connections and
its sessions are ended (`ALLOW_CONNECTIONS false` + `pg_terminate_backend`) for
ten seconds, the issue's figure; on SQLite another process holds the file's
write lock. Before the consumer told infrastructure failures from bad records,
every record consumed in such a window went to the DLQ after three attempts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import Column, MetaData, String, Table, event, func, insert, select

from hub.consumer import ProjectionConsumer
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.intake import ReferralReceived
from hub.contracts.topics import dlq_topic
from hub.db import Database
from hub.projections import Projection
from hub.tables import inbox, metadata
from hub.testing import POSTGRES_URL, settings_for

from ..events import referral_received
from .reading import read_topic

OUTAGE_S = 10.0

outage_metadata = MetaData()
applied_referrals = Table(
    "applied_referrals",
    outage_metadata,
    Column("event_id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False),
)


# Referrals whose handler times out (as on a call to something away) until emptied.
timing_out: set[str] = set()


def _projection() -> Projection:
    projection = Projection("applied", [applied_referrals])

    @projection.on(ReferralReceived)
    def _applied(conn, event, meta):
        if str(event.referral_id) in timing_out:
            raise TimeoutError("the other end did not answer")
        conn.execute(
            insert(applied_referrals).values(
                event_id=meta.event_id, referral_id=str(event.referral_id)
            )
        )

    return projection


@pytest.fixture
def db(database_url) -> Iterator[Database]:
    database = Database(database_url)
    if database.is_sqlite:
        # The hub waits 30 s for SQLite's lock before it reports the file busy; a
        # short wait here lets the test see several attempts within the outage.
        @event.listens_for(database.engine, "connect")
        def _short_busy_wait(dbapi_connection, _record) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout=200")

    metadata.create_all(database.engine)
    outage_metadata.create_all(database.engine)
    yield database
    database.dispose()


@contextmanager
def database_outage(db: Database) -> Iterator[None]:
    """The service's database unusable until the block ends."""
    if db.is_sqlite:
        holder = sqlite3.connect(db.url.database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    name = db.url.database
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"
                ),
                {"name": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def _publish(
    producer: KafkaProducer, topic: str, count: int, family_id: UUID | None = None
) -> list[str]:
    ids = []
    for _ in range(count):
        event_id = str(uuid4())
        event_data = referral_received(family_id=family_id)
        record = to_kafka(
            envelope_for(
                event_data,
                event_id=event_id,
                source_service="intake",
                time=event_data.received_at,
                sequence=None,
            )
        )
        producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)
        ids.append(event_id)
    return ids


def _applied(db: Database) -> list[str]:
    with db.read() as conn:
        return conn.execute(select(applied_referrals.c.event_id)).scalars().all()


def _waits(service: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "earlyhelp_consumer_infrastructure_waits"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["service"] == service
    )


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_database_outage_pauses_the_consumer_and_dead_letters_nothing(
    db, kafka_bootstrap, tmp_path
):
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    service = f"outage-{uuid4().hex[:6]}"
    settings = settings_for(
        service,
        "",
        kafka_bootstrap,
        tmp_path,
        consumer_max_attempts=3,
        consumer_wait_backoff_max_ms=500,
    )
    consumer = ProjectionConsumer(settings, db, [_projection()], [topic])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        before = _publish(producer, topic, 1)
        _wait_for(lambda: _applied(db) == before, "the consumer to apply the first record")

        started = time.monotonic()
        with database_outage(db):
            during = _publish(producer, topic, 5)
            # More failed attempts than the DLQ's bound: the old runner would have
            # dead-lettered what it held by now.
            _wait_for(lambda: _waits(service) > settings.consumer_max_attempts, "retries")
            degradation = consumer.degradation()
            if not db.is_sqlite:
                time.sleep(max(OUTAGE_S - (time.monotonic() - started), 0))
            assert consumer.degradation() is not None
        _wait_for(lambda: sorted(_applied(db)) == sorted(before + during), "every record applied")
        _wait_for(lambda: consumer.degradation() is None, "the consumer to report recovery")
    finally:
        stop.set()
        thread.join(20)
        producer.close()
    assert not thread.is_alive(), "the consumer did not stop"

    assert degradation is not None and degradation.startswith("waiting for the database")
    assert "OperationalError" in degradation
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(inbox)).scalar_one() == 6
    dead = REGISTRY.get_sample_value(
        "earlyhelp_consumer_events_total",
        {"service": service, "topic": topic, "outcome": "dead_lettered"},
    )
    assert not dead
    assert read_topic(kafka_bootstrap, dlq_topic(topic), expected=0, timeout_s=1) == []


def test_a_record_waiting_holds_back_its_partition_and_nothing_past_it_is_committed(
    db, kafka_bootstrap, tmp_path
):
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    service = f"holdback-{uuid4().hex[:6]}"
    settings = settings_for(
        service, "", kafka_bootstrap, tmp_path, consumer_wait_backoff_max_ms=200
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    family = uuid4()  # one key: one partition, in order
    [first] = _publish(producer, topic, 1, family)
    blocked = referral_received(family_id=family)
    timing_out.add(str(blocked.referral_id))
    record = to_kafka(
        envelope_for(
            blocked,
            event_id=(blocked_id := str(uuid4())),
            source_service="intake",
            time=blocked.received_at,
            sequence=None,
        )
    )
    producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)
    behind = _publish(producer, topic, 2, family)
    consumer = ProjectionConsumer(settings, db, [_projection()], [topic])
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait_for(lambda: _waits(service) >= 5, "several attempts at the blocked record")
        held = _applied(db)
        degradation = consumer.degradation()
        timing_out.clear()  # the other end answers again
        _wait_for(lambda: sorted(_applied(db)) == sorted([first, blocked_id, *behind]), "the rest")
        _wait_for(lambda: consumer.degradation() is None, "recovery reported")
    finally:
        stop.set()
        thread.join(20)
        producer.close()

    assert held == [first]  # the records behind the blocked one waited too
    assert degradation is not None and "TimeoutError" in degradation
    assert not REGISTRY.get_sample_value(
        "earlyhelp_consumer_events_total",
        {"service": service, "topic": topic, "outcome": "dead_lettered"},
    )
