"""Several replicas of a service on one PostgreSQL database: one relay publishes at a time."""

import threading
import time
from collections import Counter
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hub.contracts.envelope import from_kafka
from hub.db import Database
from hub.outbox import _RELAY_LOCK_KEY, OutboxRelay
from hub.store import EventStore, PendingEvent
from hub.tables import event_store, metadata, outbox
from hub.testing import POSTGRES_URL, settings_for

from ..events import referral_received
from .reading import read_topic


@pytest.fixture
def postgres_db(postgres_database_url):
    database = Database(postgres_database_url)
    metadata.create_all(database.engine)
    yield database
    database.dispose()


def _append(db, store, count):
    ids = []
    for _ in range(count):
        event = PendingEvent(referral_received())
        with db.write() as conn:
            store.append(conn, f"referral-{uuid4()}", 0, [event])
        ids.append(str(event.event_id))
    return ids


def _start(relay):
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_two_replicas_publish_every_event_once_and_the_survivor_takes_over(
    postgres_db, kafka_bootstrap, tmp_path
):
    db = postgres_db
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    settings = settings_for("intake", "", kafka_bootstrap, tmp_path)
    store = EventStore(topic)
    first, second = OutboxRelay(db, settings), OutboxRelay(db, settings)
    stop_first, thread_first = _start(first)
    stop_second, thread_second = _start(second)

    before = _append(db, store, 30)
    deadline = time.monotonic() + 20
    while first.backlog() and time.monotonic() < deadline:
        first.notify()
        second.notify()
        time.sleep(0.05)
    leader, leader_stop, leader_thread, survivor = (
        (first, stop_first, thread_first, second)
        if first._leadership is not None
        else (second, stop_second, thread_second, first)
    )
    assert survivor._leadership is None  # exactly one leads
    leader_stop.set()
    leader_thread.join()
    leader.close()

    after = _append(db, store, 10)
    deadline = time.monotonic() + 20
    while survivor.backlog() and time.monotonic() < deadline:
        survivor.notify()
        time.sleep(0.05)
    (stop_first if survivor is first else stop_second).set()
    (thread_first if survivor is first else thread_second).join()
    survivor.close()

    records = read_topic(kafka_bootstrap, topic, expected=40)
    published = Counter(from_kafka(r.key, r.value, r.headers).id for r in records)
    assert set(published) == set(before + after)
    assert max(published.values()) == 1, "an event was published twice"


def _lock_holder(db) -> int | None:
    """The backend pid holding the relays' advisory lock in this database, if any."""
    with db.read() as conn:
        return conn.execute(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": _RELAY_LOCK_KEY},
        ).scalar()


def _outbox_rows(db) -> int:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()


def _wait_for(condition, what, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_a_leader_whose_session_is_killed_stops_and_one_relay_leads_after(
    postgres_db, kafka_bootstrap, tmp_path
):
    db = postgres_db
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    batch_size = 5
    settings = settings_for("intake", "", kafka_bootstrap, tmp_path, relay_batch_size=batch_size)
    store = EventStore(topic)
    relays = [OutboxRelay(db, settings), OutboxRelay(db, settings)]
    running = [_start(relay) for relay in relays]
    appended: list[str] = []
    streaming = threading.Event()
    streaming.set()

    def stream():  # a steady stream of events, one transaction each
        while streaming.is_set():
            appended.extend(_append(db, store, 1))
            for relay in relays:
                relay.notify()

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        _wait_for(lambda: len(appended) >= 30 and _lock_holder(db) is not None, "a leader")
        killed = _lock_holder(db)
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            assert conn.execute(
                sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": killed}
            ).scalar_one()
        admin.dispose()
        killed_at = len(appended)
        _wait_for(lambda: _lock_holder(db) not in (None, killed), "a new leader")
        _wait_for(lambda: len(appended) >= killed_at + 30, "the stream to go on")
    finally:
        streaming.clear()
        streamer.join()
    _wait_for(lambda: _outbox_rows(db) == 0, "the outbox to empty")
    leaders = [relay for relay in relays if relay._leadership is not None]
    for stop, thread in running:
        stop.set()
        thread.join()
    for relay in relays:
        relay.close()

    records = read_topic(kafka_bootstrap, topic, expected=len(appended))
    published = Counter(from_kafka(r.key, r.value, r.headers).id for r in records)
    assert set(published) == set(appended)
    twice = [event_id for event_id, count in published.items() if count > 1]
    assert max(published.values()) <= 2
    # At most the one batch in flight when the session died: consecutive positions.
    assert len(twice) <= batch_size, f"{len(twice)} events published twice"
    with db.read() as conn:
        positions = sorted(
            conn.execute(
                sa.select(event_store.c.position).where(event_store.c.event_id.in_(twice))
            ).scalars()
        )
    assert positions == list(range(positions[0], positions[0] + len(positions))) if twice else True
    assert len(leaders) == 1, "then one leader"
