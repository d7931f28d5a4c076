"""Several replicas of a service on one PostgreSQL database: one relay publishes at a time."""

import threading
import time
from collections import Counter
from uuid import uuid4

import pytest

from hub.contracts.envelope import from_kafka
from hub.db import Database
from hub.outbox import OutboxRelay
from hub.store import EventStore, PendingEvent
from hub.tables import metadata
from hub.testing import settings_for

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
