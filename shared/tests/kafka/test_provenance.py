"""Consumers trust the topic, not the record: forged provenance is dead-lettered, never applied."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from kafka import KafkaProducer
from sqlalchemy import Column, MetaData, String, Table, insert, select

from hub.consumer import CONSUMED, ProjectionConsumer
from hub.contracts.allocation import CaseAllocated
from hub.contracts.envelope import Envelope, envelope_for, from_kafka, to_kafka
from hub.contracts.topics import dlq_topic, service_topic, topic_owner
from hub.projections import Projection
from hub.provenance import provenance_problem
from hub.testing import settings_for

from .reading import read_topic

INTAKE_TOPIC = service_topic("intake")
ALLOCATION_TOPIC = service_topic("allocation")

allocations_seen = MetaData()
allocated = Table(
    "provenance_allocated",
    allocations_seen,
    Column("event_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
)


def _envelope(source_service: str = "allocation") -> Envelope:
    return envelope_for(
        CaseAllocated.example().model_copy(update={"family_id": uuid4()}),
        event_id=str(uuid4()),
        source_service=source_service,
        time=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        sequence=None,
    )


def _with_source(envelope: Envelope, source: str) -> Envelope:
    return Envelope(**{**envelope.__dict__, "source": source})


# --- the rule ------------------------------------------------------------------------


def test_every_service_topic_has_its_owner() -> None:
    assert topic_owner(INTAKE_TOPIC) == "intake"
    assert topic_owner(ALLOCATION_TOPIC) == "allocation"
    assert topic_owner(dlq_topic(INTAKE_TOPIC)) is None
    assert topic_owner("earlyhelp.partner.harlesden-primary-school.v1") is None


def test_an_event_on_its_producers_topic_from_its_producer_is_believed() -> None:
    assert provenance_problem(ALLOCATION_TOPIC, _envelope()) is None


def test_an_event_on_another_services_topic_is_not_believed() -> None:
    problem = provenance_problem(INTAKE_TOPIC, _envelope())
    assert problem == (
        "earlyhelp.case.allocated.v1 is published only by allocation, but arrived on "
        "earlyhelp.intake.v1, which only intake writes"
    )


def test_an_event_on_the_right_topic_with_another_source_is_not_believed() -> None:
    problem = provenance_problem(ALLOCATION_TOPIC, _with_source(_envelope(), "/earlyhelp/intake"))
    assert problem == (
        "source '/earlyhelp/intake' is not '/earlyhelp/allocation', the only service that "
        "publishes earlyhelp.case.allocated.v1 on earlyhelp.allocation.v1"
    )


def test_an_unknown_type_on_a_service_topic_is_judged_by_its_source() -> None:
    unknown = Envelope(**{**_envelope().__dict__, "type": "earlyhelp.case.teleported.v1"})
    assert provenance_problem(ALLOCATION_TOPIC, unknown) is None
    forged = _with_source(unknown, "https://attacker.example/" + "x" * 500)
    problem = provenance_problem(ALLOCATION_TOPIC, forged)
    assert problem is not None and "is not '/earlyhelp/allocation'" in problem
    assert len(problem) < 300  # a forged attribute is shown cut short


def test_on_a_topic_no_service_owns_the_source_must_still_be_the_producers() -> None:
    topic = "earlyhelp.private-stream.v1"
    assert provenance_problem(topic, _envelope()) is None
    assert provenance_problem(topic, _with_source(_envelope(), "/earlyhelp/caseplan")) is not None


# --- the consumer, on a real broker ----------------------------------------------------


def _projection() -> Projection:
    projection = Projection("provenance_allocated", [allocated])

    @projection.on(CaseAllocated)
    def _record(conn, event, meta):
        conn.execute(insert(allocated).values(event_id=meta.event_id, case_id=str(event.case_id)))

    return projection


@pytest.fixture
def bootstrap(own_broker) -> str:
    """A broker for the test alone: the service topics start empty."""
    return own_broker.bootstrap_servers


@pytest.fixture
def producer(bootstrap):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    yield producer
    producer.close()


def _send(producer, topic: str, envelope: Envelope) -> None:
    record = to_kafka(envelope)
    producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(10)


def test_a_forged_case_allocated_is_dead_lettered_and_changes_nothing(
    db, bootstrap, producer, tmp_path
):
    service = f"consumer-{uuid4().hex[:6]}"
    settings = settings_for(service, "", bootstrap, tmp_path)
    on_intakes_topic = _envelope()
    genuine = _envelope()
    # The genuine event again under a new id and intake's source: same family, so the
    # same partition, handled before the genuine one.
    wrong_source = Envelope(
        **{**genuine.__dict__, "id": str(uuid4()), "source": "/earlyhelp/intake"}
    )
    _send(producer, INTAKE_TOPIC, on_intakes_topic)
    _send(producer, ALLOCATION_TOPIC, wrong_source)
    _send(producer, ALLOCATION_TOPIC, genuine)

    allocations_seen.create_all(db.engine)
    consumer = ProjectionConsumer(settings, db, [_projection()], [INTAKE_TOPIC, ALLOCATION_TOPIC])

    def applied() -> list[str]:
        with db.read() as conn:
            return conn.execute(select(allocated.c.event_id)).scalars().all()

    def dead_lettered(topic: str) -> float:
        return CONSUMED.labels(service, topic, "dead_lettered")._value.get()

    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not (
            applied() and dead_lettered(INTAKE_TOPIC) and dead_lettered(ALLOCATION_TOPIC)
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(15)

    assert applied() == [genuine.id]
    reasons = {}
    for topic in (INTAKE_TOPIC, ALLOCATION_TOPIC):
        for record in read_topic(bootstrap, dlq_topic(topic), expected=1):
            headers = dict(record.headers)
            if headers["dlq_consumer"] == settings.consumer_group.encode():
                parked = from_kafka(record.key, record.value, list(record.headers))
                reasons[parked.id] = headers["dlq_reason"].decode()
    assert reasons == {
        on_intakes_topic.id: "untrusted: earlyhelp.case.allocated.v1 is published only by "
        "allocation, but arrived on earlyhelp.intake.v1, which only intake writes",
        wrong_source.id: "untrusted: source '/earlyhelp/intake' is not '/earlyhelp/allocation', "
        "the only service that publishes earlyhelp.case.allocated.v1 on earlyhelp.allocation.v1",
    }
