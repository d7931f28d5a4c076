import threading
import time
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from hub.store import ConcurrencyConflict, EventStore, PendingEvent
from hub.tables import event_store, outbox

from ..events import referral_received

TOPIC = "earlyhelp.intake.v1"


def test_appended_events_read_back_in_order_and_are_queued_for_publishing(db):
    store = EventStore(TOPIC)
    family = uuid4()
    first, second = referral_received(family), referral_received(family)
    with db.write() as conn:
        store.append(conn, "referral-a", 0, [PendingEvent(first)], actor="tester")
        store.append(conn, "referral-a", 1, [PendingEvent(second)])

    with db.read() as conn:
        stream = store.read_stream(conn, "referral-a")
        queued = conn.execute(select(outbox.c.position, outbox.c.topic)).all()

    assert [e.stream_version for e in stream] == [1, 2]
    assert [e.decode() for e in stream] == [first, second]
    assert stream[0].actor == "tester"
    assert stream[0].family_id == str(family)
    assert stream[0].occurred_at.tzinfo is not None
    assert sorted(queued) == [(e.position, TOPIC) for e in stream]


def test_a_stale_expected_version_is_refused_and_stores_nothing(db):
    store = EventStore(TOPIC)
    with db.write() as conn:
        store.append(conn, "referral-b", 0, [PendingEvent(referral_received())])

    with pytest.raises(ConcurrencyConflict) as conflict, db.write() as conn:
        store.append(conn, "referral-b", 0, [PendingEvent(referral_received())])

    assert conflict.value.actual_version == 1
    assert "expected 0" in str(conflict.value)
    with db.read() as conn:
        assert len(store.read_stream(conn, "referral-b")) == 1
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 1


def test_concurrent_appends_to_one_stream_let_exactly_one_writer_win(db):
    store = EventStore(TOPIC)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def writer() -> None:
        barrier.wait()
        try:
            with db.write() as conn:
                version = store.stream_version(conn, "referral-race")
                store.append(conn, "referral-race", version, [PendingEvent(referral_received())])
            outcomes.append("won")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with db.read() as conn:
        versions = [e.stream_version for e in store.read_stream(conn, "referral-race")]
    # Every writer either won with a fresh version or was told of the conflict.
    assert len(outcomes) == 8
    assert versions == list(range(1, outcomes.count("won") + 1))


def test_read_all_never_skips_an_event_under_concurrent_writers(db):
    """A follower reading from its last position sees every event, whatever commits first."""
    store = EventStore(TOPIC)
    writers, per_writer = 6, 25
    done = threading.Event()
    seen: list[int] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            with db.write() as conn:
                store.append(conn, f"referral-{n}-{i}", 0, [PendingEvent(referral_received())])

    def follow() -> None:
        position = 0
        while True:
            finished = done.is_set()
            with db.read() as conn:
                batch = store.read_all(conn, after_position=position, limit=7)
            seen.extend(e.position for e in batch)
            if batch:
                position = batch[-1].position
            elif finished:
                return
            else:
                time.sleep(0.001)

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    follower.join()

    with db.read() as conn:
        stored = conn.execute(select(event_store.c.position).order_by("position")).scalars().all()
    assert len(stored) == writers * per_writer
    assert seen == stored


def test_enqueue_from_queues_stored_events_again_without_doubling_pending_ones(db):
    store = EventStore(TOPIC)
    with db.write() as conn:
        recorded = [
            store.append(conn, f"referral-r{i}", 0, [PendingEvent(referral_received())])[0]
            for i in range(5)
        ]
        conn.execute(outbox.delete().where(outbox.c.position <= recorded[2].position))

    with db.write() as conn:
        queued = store.enqueue_from(conn, recorded[1].position)

    with db.read() as conn:
        pending = conn.execute(select(outbox.c.position).order_by("position")).scalars().all()
    assert queued == 2
    assert pending == [e.position for e in recorded[1:]]


def test_each_event_follows_the_latest_of_its_family_the_service_knows(db):
    """Its own events and the ones it consumed (`family_order.advance`) alike, so that a
    consumer of several topics knows which event it must have seen first; its own next
    event follows the one it appended, whatever the clocks say."""
    from datetime import UTC, datetime, timedelta

    from hub import family_order

    store = EventStore(TOPIC)
    family, other = uuid4(), uuid4()
    consumed_from_another_topic = str(uuid4())
    with db.write() as conn:
        first, second = store.append(
            conn,
            "referral-f",
            0,
            [PendingEvent(referral_received(family)), PendingEvent(referral_received(family))],
        )
        (alone,) = store.append(conn, "referral-g", 0, [PendingEvent(referral_received(other))])
        family_order.advance(
            conn,
            str(family),
            consumed_from_another_topic,
            datetime.now(UTC) + timedelta(hours=1),
            consumed=True,
        )
        # Consumed late, older than what the service knows: the head stays.
        family_order.advance(
            conn, str(family), str(uuid4()), datetime(2020, 1, 1, tzinfo=UTC), consumed=True
        )
        (third,) = store.append(conn, "referral-f", 2, [PendingEvent(referral_received(family))])

    assert (first.follows, second.follows) == (None, first.event_id)
    assert alone.follows is None
    assert third.follows == consumed_from_another_topic
    with db.read() as conn:
        assert [e.follows for e in store.read_stream(conn, "referral-f")] == [
            None,
            first.event_id,
            consumed_from_another_topic,
        ]
        assert family_order.head_of(conn, str(family)) == third.event_id
