"""One trace per referral: the partner's `traceparent` through intake, the outbox, Kafka
and every consuming service, in the Kafka headers, the JSON logs and the exported spans,
and on to the webhook notifications sends the partner.

The four services run as processes with the standard OpenTelemetry variables
pointing their OTLP/HTTP exporter at a collector this test runs (a plain HTTP
server decoding the protobuf requests), and at DEBUG so each consumer logs the
record it applied, inside that record's span. The partner's webhook endpoint is
`tests/webhook_receiver.py`, a process of its own that records each request's headers.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from hub.broker import EmbeddedBroker
from tests.e2e.support import (
    INTAKE_TOPIC,
    accepted,
    ce_id,
    intake_event_ids,
    read_topic,
    referral_body,
    wait_everywhere,
)
from tests.harness import PARTNER, Hub, query, wait_for
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

CONSUMERS = ("allocation", "caseplan", "notifications")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARTNER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARTNER_SPAN}-01"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            attributes.get("service.name", "?"),
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {
                                a.key: getattr(a.value, a.value.WhichOneof("value"))
                                for a in span.attributes
                                if a.value.WhichOneof("value")
                            },
                        )
                    )
        with self.server.lock:
            self.server.spans.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(tmp_path / "receiver") as started:
        yield started


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def log_lines(hub: Hub, service: str) -> list[dict]:
    lines = []
    for line in hub.log(service).splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by the process's end
                lines.append(json.loads(line))
    return lines


def handled_lines(hub: Hub, service: str, event_id: str) -> list[dict]:
    """The consumer's lines about applying this event (it logs one per record, at DEBUG)."""
    return [
        line
        for line in log_lines(hub, service)
        if line.get("event_id") == event_id and line.get("logger") == "hub.consumer"
    ]


def ancestors(span: Span, spans: list[Span]) -> list[Span]:
    """The spans above `span` in its trace, nearest first, as far as the collector has them."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    while (span := by_id.get(span.parent_span_id)) is not None:
        chain.append(span)
    return chain


def test_one_trace_from_the_partners_post_through_every_consumer_to_its_webhook(
    own_broker: EmbeddedBroker,
    tmp_path,
    collector: Collector,
    receiver: WebhookReceiver,
    client: httpx.Client,
) -> None:
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "EARLYHELP_LOG_LEVEL": "DEBUG",
    }
    with Hub(tmp_path / "hub", own_broker.bootstrap_servers, extra_env=otel) as hub:
        # The referring school subscribes to hear of its own referrals by webhook.
        subscribed = client.post(
            hub.url("notifications") + "/v1/subscriptions",
            json={
                "event_types": ["earlyhelp.referral.received.v1"],
                "delivery": {"type": "webhook", "url": receiver.url(PARTNER)},
            },
            headers=hub.auth(PARTNER),
        )
        assert subscribed.status_code == 201, subscribed.text
        receiver.configure(PARTNER, secret=subscribed.json()["secret"])
        url = hub.url("intake") + "/v1/referrals"
        traced = accepted(
            client.post(
                url, json=referral_body(), headers=hub.auth() | {"traceparent": TRACEPARENT}
            ),
            hub,
        )
        # Without a traceparent the hub starts a trace of its own, carried the same way.
        untraced = accepted(client.post(url, json=referral_body(), headers=hub.auth()), hub)
        wait_everywhere(hub, [traced, untraced])
        events = intake_event_ids(hub, [traced, untraced])
        (event_id,) = events[traced.referral_id]
        (other_event_id,) = events[untraced.referral_id]

        # The outbox (the event store row it points at) kept the request's trace.
        (stored,) = query(
            hub.database_url("intake"),
            "SELECT traceparent FROM event_store WHERE event_id = :e",
            e=event_id,
        )
        match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", stored["traceparent"])
        assert match and match[1] == TRACE_ID, stored
        intake_span = match[2]
        (other,) = query(
            hub.database_url("intake"),
            "SELECT traceparent FROM event_store WHERE event_id = :e",
            e=other_event_id,
        )
        other_trace = other["traceparent"].split("-")[1]
        assert other_trace not in (TRACE_ID, "0" * 32), other

        # The Kafka record carries it in its headers.
        records = {ce_id(r): r for r in read_topic(hub.bootstrap_servers, INTAKE_TOPIC)}
        headers = dict(records[event_id].headers)
        assert headers["traceparent"].decode() == stored["traceparent"]
        assert (
            dict(records[other_event_id].headers)["traceparent"].decode() == (other["traceparent"])
        )

        # Every consumer's log lines about handling it carry the same trace id.
        for service in CONSUMERS:
            for event, trace_id in ((event_id, TRACE_ID), (other_event_id, other_trace)):
                lines = wait_for(
                    lambda service=service, event=event: handled_lines(hub, service, event),
                    15,
                    lambda service=service: (
                        f"{service} never logged the event\n" + hub.logs_tail([service])
                    ),
                )
                assert {line.get("trace_id") for line in lines} == {trace_id}, lines

        # And the exported spans make one trace: the partner's span, intake's server
        # span under it, and each consumer's span under intake's.
        def whole_trace() -> list[Span]:
            spans = collector.of_trace(TRACE_ID)
            services = {s.service for s in spans}
            return spans if services >= {"intake", *CONSUMERS} else []

        spans = wait_for(
            whole_trace, 15, lambda: f"spans of the trace: {collector.of_trace(TRACE_ID)}"
        )
        (server,) = [s for s in spans if s.service == "intake" and s.name == "POST /v1/referrals"]
        assert server.parent_span_id == PARTNER_SPAN
        assert server.span_id == intake_span
        for service in CONSUMERS:
            processed = [
                s for s in spans if s.service == service and s.name == f"{INTAKE_TOPIC} process"
            ]
            assert len(processed) == 1, (service, spans)
            assert processed[0].parent_span_id == intake_span

        # The webhook telling the school of its referral goes on in the same trace: the
        # receiver got a traceparent of the partner's trace id, whose parent is
        # notifications' CLIENT span for the attempt, under its consumer span of the event.
        def webhooks() -> dict[str, dict]:
            found = {r["event"]["id"]: r for r in receiver.records(PARTNER) if r["accepted"]}
            return found if {event_id, other_event_id} <= found.keys() else {}

        delivered = wait_for(
            webhooks, 30, lambda: "webhooks missing\n" + hub.logs_tail(["notifications"])
        )
        webhook = delivered[event_id]
        sent = re.fullmatch(
            r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}",
            webhook["headers"].get("traceparent", ""),
        )
        assert sent and sent[1] == TRACE_ID, webhook["headers"]
        untraced_sent = delivered[other_event_id]["headers"]["traceparent"]
        assert untraced_sent.split("-")[1] == other_trace, untraced_sent

        def client_span() -> Span | None:
            spans = collector.of_trace(TRACE_ID)
            return next((s for s in spans if s.span_id == sent[2]), None)

        posted = wait_for(
            client_span, 15, lambda: f"spans of the trace: {collector.of_trace(TRACE_ID)}"
        )
        assert (posted.service, posted.kind) == ("notifications", OtlpSpan.SPAN_KIND_CLIENT)
        assert posted.attributes["http.response.status_code"] == 204
        assert posted.attributes["url.full"] == receiver.url(PARTNER)
        (consumed,) = [
            s for s in spans if s.service == "notifications" and s.name == f"{INTAKE_TOPIC} process"
        ]
        chain = ancestors(posted, collector.of_trace(TRACE_ID))
        assert consumed in chain, chain
        assert [s.span_id for s in chain[chain.index(consumed) :]] == [
            consumed.span_id,
            intake_span,
        ]
