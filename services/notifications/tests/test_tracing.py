"""A webhook continues the referral's trace: the consumer's span context is stored with the
delivery at fan-out, each attempt is a CLIENT span under it, and the receiver (a process of
its own) gets the attempt's W3C `traceparent`."""

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.topics import service_topic
from hub.observability import configure_tracing

from .conftest import SCHOOL, as_, referral, wait_until

PARTNER_SPAN = "b7ad6b7169203331"
TRACESTATE = "partner=harlesden"
# Where a partner would put a token; it must not reach a trace.
QUERY_SECRET = "tok-5d41402abc4b2a76"
CLIENT_ATTRIBUTES = {
    "http.request.method",
    "url.full",
    "server.address",
    "server.port",
    "http.response.status_code",
    "http.request.resend_count",
    "error.type",
    "cloudevents.event_id",
    "cloudevents.event_type",
}


@pytest.fixture
def spans():
    """Every span this process ends while the test runs (the services' own provider)."""
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    configure_tracing("notifications").add_span_processor(processor)
    yield exporter
    # The provider cannot drop a processor: a shut-down one keeps nothing more.
    processor.shutdown()


@pytest.fixture
def publish_traced(kafka_bootstrap):
    """Publish an event as a producer's relay would, with the trace context of its request."""
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)

    def send(event, traceparent: str, tracestate: str) -> str:
        event_id = str(uuid4())
        record = to_kafka(
            envelope_for(
                event,
                event_id=event_id,
                source_service=event.producer,
                time=datetime.now(UTC),
                sequence=None,
                traceparent=traceparent,
                tracestate=tracestate,
            )
        )
        topic = service_topic(event.producer)
        producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(60)
        return event_id

    yield send
    producer.close()


def partner_trace() -> tuple[str, str]:
    """A new trace id, and the traceparent of a partner's span in it (sampled)."""
    trace = uuid4().hex
    return trace, f"00-{trace}-{PARTNER_SPAN}-01"


def client_spans_of(spans: InMemorySpanExporter, trace: str) -> list[ReadableSpan]:
    return sorted(
        (
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.CLIENT and f"{s.context.trace_id:032x}" == trace
        ),
        key=lambda s: s.start_time,
    )


def stored_trace_context(database_url: str, event_id: str):
    """The trace context fan-out stored with the event's one delivery."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            (stored,) = conn.execute(
                sa.text("SELECT traceparent, tracestate FROM deliveries WHERE event_id = :e"),
                {"e": event_id},
            ).all()
            return stored
    finally:
        engine.dispose()


def span_id(traceparent: str) -> str:
    return traceparent.split("-")[2]


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]


def hex_span(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


def test_a_webhook_carries_the_referral_s_trace_to_the_receiver(
    notifications, receiver, publish_traced, spans, database_url
):
    app = notifications()
    school = receiver()
    url = f"{school.url}?token={QUERY_SECRET}"
    created = app.post(
        "/v1/subscriptions",
        json={"event_types": ["earlyhelp.referral.*"], "delivery": {"type": "webhook", "url": url}},
        headers=as_(app, SCHOOL),
    )
    assert created.status_code == 201, created.text
    school.secret = created.json()["secret"]
    school.fail_next(1)  # the first attempt fails, the second is accepted
    received = referral(reference="HPS-TRACE-1")
    trace, traceparent = partner_trace()
    event_id = publish_traced(received, traceparent, TRACESTATE)

    wait_until(lambda: school.accepted(), message="the webhook never arrived")
    stored = stored_trace_context(database_url, event_id)

    # Fan-out stored the context of notifications' consumer span: the partner's trace,
    # under a span of the hub's own.
    assert trace_id(stored.traceparent) == trace, stored
    assert span_id(stored.traceparent) != PARTNER_SPAN, stored
    assert stored.tracestate == TRACESTATE

    # Every attempt sent a traceparent of that trace, each with its own span.
    attempts = school.received
    assert [r["status"] for r in attempts] == [503, 204]
    sent = [r["headers"]["traceparent"] for r in attempts]
    assert {trace_id(t) for t in sent} == {trace}, sent
    assert len({span_id(t) for t in sent} | {span_id(stored.traceparent)}) == 3, sent
    assert {r["headers"].get("tracestate") for r in attempts} == {TRACESTATE}

    # Each attempt is a CLIENT span whose parent is the consumer span of the event.
    failed, delivered = wait_until(
        lambda: len(found := client_spans_of(spans, trace)) == 2 and found,
        message="the two attempts' CLIENT spans were never ended",
    )
    (consumer,) = [
        s for s in spans.get_finished_spans() if hex_span(s) == span_id(stored.traceparent)
    ]
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.attributes["cloudevents.event_id"] == event_id
    assert f"{consumer.parent.span_id:016x}" == PARTNER_SPAN
    for span, header in ((failed, sent[0]), (delivered, sent[1])):
        assert span.name == "POST"
        assert span.parent.span_id == consumer.context.span_id
        assert hex_span(span) == span_id(header)
        assert set(span.attributes) <= CLIENT_ATTRIBUTES, span.attributes
        assert span.attributes["http.request.method"] == "POST"
        assert span.attributes["url.full"] == f"{school.url}?token=REDACTED"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == school.port
        assert span.attributes["cloudevents.event_id"] == event_id
    assert failed.attributes["http.response.status_code"] == 503
    assert failed.attributes["error.type"] == "503"
    assert failed.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in failed.attributes
    assert delivered.attributes["http.response.status_code"] == 204
    assert delivered.attributes["http.request.resend_count"] == 1
    assert "error.type" not in delivered.attributes
    assert delivered.status.status_code is StatusCode.UNSET
    exported = json.dumps([dict(s.attributes) for s in (failed, delivered)])
    for secret_or_personal in (QUERY_SECRET, "HPS-TRACE-1", str(received.referral_id)):
        assert secret_or_personal not in exported


def test_an_attempt_that_never_reached_the_receiver_is_a_failed_client_span(
    notifications, receiver, publish_traced, spans
):
    app = notifications()
    school = receiver()
    created = app.post(
        "/v1/subscriptions",
        json={
            "event_types": ["earlyhelp.referral.*"],
            "delivery": {"type": "webhook", "url": school.url},
        },
        headers=as_(app, SCHOOL),
    )
    assert created.status_code == 201, created.text
    school.down()  # connections are refused
    trace, traceparent = partner_trace()
    publish_traced(referral(), traceparent, TRACESTATE)

    span = wait_until(
        lambda: client_spans_of(spans, trace), message="no CLIENT span for the refused attempt"
    )[0]
    assert span.attributes["error.type"] == "httpx.ConnectError"
    assert span.status.status_code is StatusCode.ERROR
    assert "http.response.status_code" not in span.attributes


def test_a_tracestate_too_long_to_keep_is_dropped_not_the_event(
    notifications, receiver, publish_traced, database_url
):
    app = notifications()
    school = receiver()
    created = app.post(
        "/v1/subscriptions",
        json={
            "event_types": ["earlyhelp.referral.*"],
            "delivery": {"type": "webhook", "url": school.url},
        },
        headers=as_(app, SCHOOL),
    )
    assert created.status_code == 201, created.text
    school.secret = created.json()["secret"]
    # 20 members of 41 characters: valid W3C, longer than the 512 characters kept.
    tracestate = ",".join(f"vendor{i:02d}={'x' * 32}" for i in range(20))
    trace, traceparent = partner_trace()
    event_id = publish_traced(referral(), traceparent, tracestate)

    (webhook,) = wait_until(lambda: school.accepted(), message="the webhook never arrived")
    assert trace_id(webhook["headers"]["traceparent"]) == trace
    assert "tracestate" not in webhook["headers"]
    stored = stored_trace_context(database_url, event_id)
    assert trace_id(stored.traceparent) == trace and stored.tracestate is None
