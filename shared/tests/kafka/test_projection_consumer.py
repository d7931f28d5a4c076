import threading
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from kafka import KafkaProducer
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

from hub.consumer import CONSUMED, ProjectionConsumer
from hub.contracts.caseplan import (
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    ServiceStarted,
    TeamMemberAdded,
    TeamMemberRemoved,
)
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.intake import ReferralReceived
from hub.contracts.topics import dlq_topic
from hub.projections import Projection
from hub.tables import inbox
from hub.testing import settings_for

from ..events import referral_received
from .reading import read_topic

test_metadata = MetaData()
seen_referrals = Table(
    "seen_referrals",
    test_metadata,
    Column("event_id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False),
)

# Handlers fail for referrals whose id is in here, to prove retries and the DLQ.
always_failing: set[str] = set()
# Every event id a handler was called with, applied or not: what the consumer fed it.
handled: list[str] = []


def _projection() -> Projection:
    projection = Projection("seen", [seen_referrals])

    @projection.on(ReferralReceived)
    def _seen(conn, event, meta):
        handled.append(meta.event_id)
        if str(event.referral_id) in always_failing:
            raise RuntimeError("this handler cannot cope with that referral")
        conn.execute(
            insert(seen_referrals).values(
                event_id=meta.event_id, referral_id=str(event.referral_id)
            )
        )

    return projection


@pytest.fixture
def topic():
    return f"earlyhelp.test-{uuid4().hex[:8]}.v1"


@pytest.fixture
def settings(kafka_bootstrap, tmp_path):
    return settings_for(
        f"consumer-{uuid4().hex[:6]}", "", kafka_bootstrap, tmp_path, consumer_max_attempts=3
    )


@pytest.fixture
def producer(kafka_bootstrap):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    yield producer
    producer.close()


def _publish(producer, topic, event, event_id=None):
    record = to_kafka(
        envelope_for(
            event,
            event_id=event_id or str(uuid4()),
            source_service="intake",
            time=event.received_at,
            sequence=None,
        )
    )
    producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)
    return record


def _consume_until(db, settings, topic, done, timeout_s=90):
    test_metadata.create_all(db.engine)
    consumer = ProjectionConsumer(settings, db, [_projection()], [topic])
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive(), "the consumer did not stop cleanly"


def _rows(db):
    with db.read() as conn:
        return conn.execute(select(seen_referrals.c.referral_id)).scalars().all()


def test_a_redelivered_event_has_one_effect(db, settings, topic, producer):
    event = referral_received()
    event_id = str(uuid4())
    _publish(producer, topic, event, event_id)
    _publish(producer, topic, event, event_id)  # the same event, delivered again
    # The family's next event, on the same partition: applied after both copies.
    follower = referral_received(family_id=event.family_id)
    _publish(producer, topic, follower)

    _consume_until(db, settings, topic, lambda: str(follower.referral_id) in _rows(db))

    assert sorted(_rows(db)) == sorted([str(event.referral_id), str(follower.referral_id)])
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(inbox)).scalar_one() == 2


def test_an_undecodable_message_goes_to_the_dlq_and_the_consumer_carries_on(
    db, settings, topic, producer, kafka_bootstrap
):
    good = referral_received()
    # Keyed as the good event, so on its partition and before it: once the good event is
    # applied, the bad record has been dealt with (the consumer may stop then).
    family_key = str(good.family_id).encode()
    producer.send(topic, key=family_key, value=b"\x00not json", headers=[("ce_id", b"1")]).get(10)
    _publish(producer, topic, good)

    _consume_until(db, settings, topic, lambda: str(good.referral_id) in _rows(db))

    assert _rows(db) == [str(good.referral_id)]
    dead = read_topic(kafka_bootstrap, dlq_topic(topic), expected=1)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert dead[0].value == b"\x00not json"
    assert headers["dlq_reason"].startswith(b"undecodable: missing required header")
    assert headers["dlq_original_topic"] == topic.encode()
    assert headers["dlq_consumer"] == settings.consumer_group.encode()


def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    db, settings, topic, producer, kafka_bootstrap
):
    doomed = referral_received()
    # The same family, so the same partition, after the doomed one: once it is applied, the
    # doomed record is in the DLQ (records of different partitions have no order, and the
    # consumer is stopped as soon as the good one is applied).
    good = referral_received(family_id=doomed.family_id)
    always_failing.add(str(doomed.referral_id))
    doomed_record = _publish(producer, topic, doomed)
    _publish(producer, topic, good)

    _consume_until(db, settings, topic, lambda: str(good.referral_id) in _rows(db))

    assert _rows(db) == [str(good.referral_id)]
    dead = read_topic(kafka_bootstrap, dlq_topic(topic), expected=1)
    assert [d.value for d in dead] == [doomed_record.value]
    headers = dict(dead[0].headers)
    assert headers["dlq_attempts"] == b"3"
    # The class and where it was raised; the exception's text could quote the record.
    assert headers["dlq_reason"] == b"RuntimeError"
    assert b", in _seen\n" in headers["dlq_stack"]
    assert headers["dlq_stack"].endswith(b"\nRuntimeError")
    assert headers["ce_id"] == dict(doomed_record.headers)["ce_id"]


def test_offsets_are_committed_after_handling_so_a_restart_does_not_reprocess(
    db, settings, topic, producer, kafka_bootstrap
):
    first, second = referral_received(), referral_received()
    first_id, second_id = str(uuid4()), str(uuid4())
    _publish(producer, topic, first, first_id)
    _consume_until(db, settings, topic, lambda: str(first.referral_id) in _rows(db))

    _publish(producer, topic, second, second_id)
    with db.write() as conn:  # if the first record came again, the inbox would not stop it
        conn.execute(inbox.delete())
    _consume_until(db, settings, topic, lambda: str(second.referral_id) in _rows(db))

    # The second run started after the first record: its handler never saw it again
    # (a redelivery would have reached the handler, failed on the row already there,
    # and gone to the DLQ, leaving the rows looking right).
    assert [h for h in handled if h in (first_id, second_id)] == [first_id, second_id]
    assert sorted(_rows(db)) == sorted([str(first.referral_id), str(second.referral_id)])
    assert read_topic(kafka_bootstrap, dlq_topic(topic), expected=0, timeout_s=1) == []


def test_event_types_no_projection_follows_are_passed_by_not_dead_lettered(
    db, settings, topic, producer
):
    """As allocation and intake pass by case plan's events of the team around the family,
    consent, overrides and schools (issue 14): counted as ignored, never dead-lettered."""
    family_id = uuid4()
    passing = [
        model.example().model_copy(update={"family_id": family_id})
        for model in (
            TeamMemberAdded,
            TeamMemberRemoved,
            ConsentRecorded,
            ConsentNarrowed,
            ConsentWithdrawn,
            SafeguardingOverrideRecorded,
            SafeguardingOverrideEnded,
            ChildSchoolRecorded,
            ServiceStarted,
        )
    ]
    passing_ids = []
    for event in passing:
        passing_ids.append(str(uuid4()))
        record = to_kafka(
            envelope_for(
                event,
                event_id=passing_ids[-1],
                source_service="caseplan",
                time=datetime.now(UTC),
                sequence=None,
            )
        )
        producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)
    # The same family, so the same partition: applied only after every one above.
    follower = referral_received(family_id=family_id)
    _publish(producer, topic, follower)

    _consume_until(db, settings, topic, lambda: str(follower.referral_id) in _rows(db))

    def counted(outcome):
        return CONSUMED.labels(settings.service_name, topic, outcome)._value.get()

    assert (counted("ignored"), counted("dead_lettered")) == (len(passing), 0)
    assert not set(passing_ids) & set(handled)
