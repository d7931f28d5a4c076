"""A service's DLQ: listed with reasons, and records sent back through the consumer once each."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import pytest
from kafka import KafkaProducer
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

from hub.consumer import ProjectionConsumer
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.intake import ReferralReceived
from hub.contracts.topics import dlq_topic
from hub.dlq import DeadLetters, UnknownDeadLetter
from hub.projections import Projection
from hub.tables import inbox
from hub.testing import settings_for

from ..events import referral_received
from .reading import read_topic

letters_metadata = MetaData()
kept_referrals = Table(
    "kept_referrals",
    letters_metadata,
    Column("event_id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False),
)

# The handler refuses these referrals until a test "deploys the fix" by emptying it.
refused: set[str] = set()
calls: list[str] = []


def _projection() -> Projection:
    projection = Projection("kept", [kept_referrals])

    @projection.on(ReferralReceived)
    def _kept(conn, event, meta):
        calls.append(meta.event_id)
        if str(event.referral_id) in refused:
            raise ValueError("this projection refuses that referral")
        conn.execute(
            insert(kept_referrals).values(
                event_id=meta.event_id, referral_id=str(event.referral_id)
            )
        )

    return projection


@pytest.fixture
def settings(kafka_bootstrap, tmp_path):
    return settings_for(
        f"letters-{uuid4().hex[:6]}", "", kafka_bootstrap, tmp_path, consumer_max_attempts=2
    )


def _publish(producer, topic, event, event_id):
    record = to_kafka(
        envelope_for(
            event,
            event_id=event_id,
            source_service="intake",
            time=event.received_at,
            sequence=None,
        )
    )
    producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)


def _consume(db, settings, topic, until, timeout_s=90):
    consumer = ProjectionConsumer(settings, db, [_projection()], [topic])
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not until():
            assert time.monotonic() < deadline, "the consumer did not get there"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)


def _kept(db):
    with db.read() as conn:
        return sorted(conn.execute(select(kept_referrals.c.event_id)).scalars())


def test_dead_letters_are_listed_and_redriven_once_each(db, settings, kafka_bootstrap):
    letters_metadata.create_all(db.engine)
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    # One family, one partition: once `good` is applied, both copies before it were handled.
    family = uuid4()
    doomed, good = referral_received(family), referral_received(family)
    doomed_id, good_id = str(uuid4()), str(uuid4())
    refused.add(str(doomed.referral_id))
    _publish(producer, topic, doomed, doomed_id)
    _publish(producer, topic, doomed, doomed_id)  # the same event twice: dead-lettered twice
    _publish(producer, topic, good, good_id)
    # Another service consuming the same topic shares its DLQ: its records are not ours.
    producer.send(
        dlq_topic(topic),
        value=b"{}",
        headers=[("ce_id", b"other"), ("dlq_consumer", b"earlyhelp-someone-else")],
    ).get(10)
    producer.close()
    _consume(db, settings, topic, until=lambda: _kept(db) == [good_id])
    read_topic(kafka_bootstrap, dlq_topic(topic), expected=3)
    dead_letters = DeadLetters(settings, db, [_projection()], [topic])

    letters = dead_letters.read()

    assert [letter.event_id for letter in letters] == [doomed_id, doomed_id]
    assert {letter.original_topic for letter in letters} == {topic}
    assert [letter.original_offset for letter in letters] == [0, 1]
    assert all("ValueError" in letter.reason for letter in letters)
    assert all(letter.attempts == 2 for letter in letters)
    assert set(dead_letters.statuses(letters).values()) == {"not applied"}
    with pytest.raises(UnknownDeadLetter):
        dead_letters.redrive([letters[0].id, f"{dlq_topic(topic)}:0:999"])
    assert _kept(db) == [good_id]  # an unknown id: nothing redriven

    # Still refused: it goes back to the DLQ.
    [again] = dead_letters.redrive([letters[0].id])
    assert again.outcome == "dead-lettered again"
    assert len(read_topic(kafka_bootstrap, dlq_topic(topic), expected=4)) == 4

    refused.clear()  # the fix is deployed
    calls.clear()
    results = dead_letters.redrive(None)

    assert [r.outcome for r in results] == ["applied", "already applied", "already applied"]
    assert calls == [doomed_id]  # the event went back once
    assert _kept(db) == sorted([doomed_id, good_id])
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(inbox)).scalar_one() == 2
    assert set(dead_letters.statuses(dead_letters.read()).values()) == {"applied"}
    assert [r.outcome for r in dead_letters.redrive([letters[1].id])] == ["already applied"]
    assert calls == [doomed_id]
