"""Sending: one attempt by webhook (a CLIENT span, signed) or on the partner's topic."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from kafka import KafkaProducer
from kafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from hub.contracts.codes import DataClassification
from hub.contracts.envelope import Envelope, to_kafka
from hub.kafka import ensure_topics, new_producer
from hub.observability import context_from_traceparent, current_traceparent
from hub.privacy import describe_error
from notifications import signing
from notifications.delivering.common import Attempt, Job, _tracer, log_failure
from notifications.outbound import webhook_client
from notifications.settings import NotificationsSettings


def webhook_client_for(settings: NotificationsSettings) -> httpx.Client:
    """The HTTP client every webhook attempt goes through: the one place it is made,
    on the vetted transport that connects to allowed destinations only."""
    return webhook_client(
        settings.webhook_destinations(),
        timeout=httpx.Timeout(
            settings.webhook_timeout_ms / 1000,
            connect=settings.webhook_connect_timeout_ms / 1000,
        ),
        max_connections=settings.worker_concurrency * 2,
    )


class Sending:
    def _deliver(self, job: Job) -> None:
        """Attempt one delivery; the loop records the outcome with others in one transaction."""
        try:
            attempt = self._post(job) if job.channel == "webhook" else self._produce(job)
        except Exception as exc:
            log_failure("a delivery attempt failed unexpectedly: %s", exc)
            attempt = Attempt(False, None, 0, describe_error(exc), "other")
        self._results.put((job, attempt, self._clock()))
        self._wake.set()

    def _post(self, job: Job) -> Attempt:
        if job.unsigned_because is not None:
            return Attempt(False, None, 0, job.unsigned_because, "other")
        body = job.body.encode()
        headers = signing.headers(
            list(job.secrets), job.message_id, int(self._clock().timestamp()), body
        )
        headers["content-type"] = "application/cloudevents+json; charset=utf-8"
        # Exceptions are not recorded on the span: their messages are not ours to vet.
        with _tracer.start_as_current_span(
            "POST",
            context=context_from_traceparent(job.traceparent, job.tracestate),
            kind=trace.SpanKind.CLIENT,
            attributes=webhook_span_attributes(job),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            traceparent, tracestate = current_traceparent()
            if traceparent is not None:
                headers["traceparent"] = traceparent
                if tracestate:
                    headers["tracestate"] = tracestate
            started = time.perf_counter()
            try:
                response = self._http.post(job.url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                _span_failed(span, exc)
                return Attempt(
                    False, None, _ms_since(started), f"timeout: {describe_error(exc)}", "timeout"
                )
            except httpx.HTTPError as exc:
                _span_failed(span, exc)
                return Attempt(False, None, _ms_since(started), describe_error(exc), "connection")
            except Exception as exc:
                _span_failed(span, exc)
                raise
            latency = _ms_since(started)
            span.set_attribute("http.response.status_code", response.status_code)
            if 200 <= response.status_code < 300:
                return Attempt(True, response.status_code, latency, None, None)
            span.set_attribute("error.type", str(response.status_code))
            span.set_status(StatusCode.ERROR)
            return Attempt(
                False, response.status_code, latency, f"HTTP {response.status_code}", "status"
            )

    def _produce(self, job: Job) -> Attempt:
        event = json.loads(job.body)
        envelope = Envelope(
            id=event["id"],
            type=event["type"],
            source=event["source"],
            time=datetime.fromisoformat(event["time"].replace("Z", "+00:00")),
            partitionkey=event["partitionkey"],
            data=json.dumps(event["data"], separators=(",", ":")).encode(),
            subject=event["subject"],
            dataclassification=DataClassification(event["dataclassification"]),
            extensions={
                "datacategory": event["datacategory"],
                "dataregulation": event["dataregulation"],
            },
        )
        record = to_kafka(envelope)
        started = time.perf_counter()
        try:
            producer = self._partner_producer(job.topic)
            producer.send(
                job.topic, key=record.key, value=record.value, headers=record.headers
            ).get(timeout=self._hub_settings.kafka_request_timeout_ms / 1000)
        except KafkaError as exc:
            with self._producer_lock:
                # A restarted broker fences the idempotent producer for good: start afresh.
                if self._producer is not None:
                    self._producer.close(timeout=1)
                    self._producer = None
            return Attempt(False, None, _ms_since(started), describe_error(exc), "broker")
        return Attempt(True, None, _ms_since(started), None, None)

    def _partner_producer(self, topic: str) -> KafkaProducer:
        with self._producer_lock:
            if topic not in self._topics_ready:
                ensure_topics(self._hub_settings, [topic])
                self._topics_ready.add(topic)
            if self._producer is None:
                self._producer = new_producer(self._hub_settings, "partner-topics")
            return self._producer


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def webhook_span_attributes(job: Job) -> dict[str, str | int]:
    """The HTTP client semantic conventions' attributes of a webhook attempt's span.

    Never the body, the headers or anything else about the family: traces leave
    the hub for a collector, which must never hold children's data.
    """
    parts = urlsplit(job.url or "")
    default_port = 443 if parts.scheme == "https" else 80
    attributes: dict[str, str | int] = {
        "http.request.method": "POST",
        "url.full": url_without_secrets(job.url or ""),
        "server.address": parts.hostname or "",
        "server.port": parts.port or default_port,
        "cloudevents.event_id": job.event_id,
        "cloudevents.event_type": job.event_type,
    }
    if job.attempts:
        attributes["http.request.resend_count"] = job.attempts
    return attributes


def url_without_secrets(url: str) -> str:
    """`url` with every query value `REDACTED` and no user info or fragment.

    Partners sometimes authenticate webhooks with a token in the query string.
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{pair.partition('=')[0]}=REDACTED" for pair in parts.query.split("&") if pair
    )
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def _span_failed(span: Span, exc: BaseException) -> None:
    kind = type(exc)
    span.set_attribute(
        "error.type",
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}",
    )
    span.set_status(StatusCode.ERROR)
