"""The delivery worker: fan-out, then webhooks and partner topics that never lose an event.

Everything it owes is in the database: a delivery row is due at its
`next_attempt_at`, so a restart resumes the schedule where it was. Each loop:

1. fan out newly journalled events into deliveries and e-mails;
2. claim due deliveries that head their family's queue for their subscription
   (an earlier event of the family still pending or retrying holds later ones
   back, so each receiver sees a family's events in order), skipping endpoints
   whose circuit is open, and leasing each claimed row so no other replica sends
   it at the same time;
3. send them on a thread pool (a slow endpoint occupies at most
   `endpoint_max_in_flight` threads, so it cannot hold up the others) and record
   every attempt: delivered, or retried after exponential backoff with full
   jitter, or dead-lettered once `retry_for_seconds` have passed since the first
   attempt;
4. send due e-mails.

Each webhook attempt is a CLIENT span whose parent is the trace context stored
with its delivery (the consumer's span for the event), and sends its own context
as the W3C `traceparent` header, so one referral's trace reaches the partner.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.fernet import InvalidToken
from kafka import KafkaProducer
from kafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, bindparam, exists, insert, or_, select, update

from hub.clock import utc_now
from hub.contracts.codes import DataClassification
from hub.contracts.envelope import Envelope, to_kafka
from hub.db import Database
from hub.kafka import ensure_topics, new_producer
from hub.observability import context_from_traceparent, current_traceparent, tracer
from hub.privacy import describe_error, error_stack
from hub.settings import HubSettings
from notifications import signing
from notifications.encryption import SecretBox
from notifications.fanout import OPEN_STATUSES, backlog, fan_out
from notifications.mail import Mailer, plan_review_reminders
from notifications.outbound import webhook_client
from notifications.policy import SharingPolicy
from notifications.settings import NotificationsSettings
from notifications.tables import (
    deliveries,
    delivery_attempts,
    emails,
    endpoints,
    event_journal,
    subscriptions,
)

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

DELIVERIES = Counter(
    "earlyhelp_webhook_deliveries_total",
    "Delivery attempts by outcome (delivered, retrying, dead_lettered, endpoint_gone) and channel",
    ["outcome", "channel"],
)
FAILURES = Counter(
    "earlyhelp_webhook_failures_total",
    "Failed delivery attempts, by reason (status, timeout, connection, broker, other)",
    ["reason"],
)
BACKLOG = Gauge("earlyhelp_webhook_backlog", "Deliveries pending or retrying")
SUBSCRIPTIONS_PAUSED = Counter(
    "earlyhelp_webhook_subscriptions_paused_total",
    "Subscriptions the hub paused itself, by reason (endpoint_gone: the receiver answered 410)",
    ["reason"],
)
CIRCUIT_OPEN = Gauge(
    "earlyhelp_webhook_circuit_open", "1 while an endpoint's circuit is open", ["endpoint"]
)
# The failure counters exist at 0 from the start: dashboards and alerts see "none yet".
for _reason in ("status", "timeout", "connection", "broker", "other"):
    FAILURES.labels(_reason)
SUBSCRIPTIONS_PAUSED.labels("endpoint_gone")
EMAILS = Counter("earlyhelp_emails_total", "E-mails by outcome (sent, failed)", ["outcome"])

_ERROR_CHARS = 500
# Standard Webhooks: a receiver answers 410 Gone to say the endpoint no longer exists.
_GONE = 410
# The e-mails being sent count against the pool's capacity under this name.
_MAIL = "mail"
# Counting the backlog reads every waiting delivery: often enough for a gauge.
_BACKLOG_EVERY_S = 1.0
# Decrypted secrets kept in memory, by their encrypted form (a subscription's changes
# with each rotation): Fernet would otherwise run for every attempt.
_OPENED_SECRETS = 1024
# Asked on every round of the worker: built once.
_FAN_OUT_DUE = (
    select(event_journal.c.seq)
    .where(
        event_journal.c.fanned_out.is_(False),
        event_journal.c.journalled_at <= bindparam("journalled_by"),
    )
    .limit(1)
)


@dataclass(frozen=True)
class Job:
    delivery_pk: int
    subscription_id: str
    message_id: str
    event_id: str
    event_type: str
    body: str
    channel: str
    endpoint: str
    url: str | None
    topic: str | None
    secrets: tuple[str, ...]
    attempts: int
    first_attempt_at: datetime | None
    # Why the webhook cannot be signed (its secret opens with none of the keys), if so.
    unsigned_because: str | None = None
    # The trace context stored with the delivery: its attempts' spans are children of it.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    reason: str | None


def backoff(attempts: int, base_ms: int, max_ms: int, rng: random.Random) -> timedelta:
    """Full jitter: a uniform wait between 0 and base * 2^(attempts-1), capped."""
    ceiling = min(max_ms, base_ms * 2 ** min(attempts - 1, 40))
    return timedelta(milliseconds=rng.uniform(0, ceiling))


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        hub_settings: HubSettings,
        settings: NotificationsSettings,
        policy: SharingPolicy,
        secret_box: SecretBox,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._hub_settings = hub_settings
        self._settings = settings
        self._policy = policy
        self._box = secret_box
        self._opened: dict[str, str] = {}
        self._clock = clock
        self._rng = random.Random()
        self._mailer = Mailer(settings, settings.mailbox_dir or hub_settings.var_dir / "mailbox")
        self._http = webhook_client(
            settings.webhook_destinations(),
            timeout=httpx.Timeout(
                settings.webhook_timeout_ms / 1000,
                connect=settings.webhook_connect_timeout_ms / 1000,
            ),
            max_connections=settings.worker_concurrency * 2,
        )
        self._pool = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="webhook")
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()
        self._topics_ready: set[str] = set()
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._last_reminders = -float("inf")
        self._last_backlog = -float("inf")
        self._results: queue.Queue[tuple[Job, Attempt, datetime]] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="notifications-delivery", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming; attempts in flight finish and are recorded (their leases expire else)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        # Claims never exceed the pool's capacity, so this waits for at most one round of
        # attempts, each bounded by its timeout; every claimed delivery is recorded.
        self._pool.shutdown(wait=True)
        self._record_results()
        self._http.close()
        if self._producer is not None:
            self._producer.close(timeout=5)

    def run(self, stop: threading.Event) -> None:
        with self._db.read() as conn:
            for row in conn.execute(select(endpoints)):
                CIRCUIT_OPEN.labels(row.endpoint).set(1 if row.state != "closed" else 0)
        while not stop.is_set():
            try:
                busy = self.tick()
            except Exception as exc:
                _log_failure("delivery loop failed; trying again: %s", exc)
                busy = False
            if not busy:
                # A finished attempt wakes the loop early, so its slot is free again at once.
                self._wake.wait(self._settings.worker_poll_ms / 1000)
                self._wake.clear()

    def tick(self) -> bool:
        """One round of recording, fan-out, claims and sends; True when there may be more."""
        settings = self._settings
        recorded = self._record_results()
        now = self._clock()
        window = timedelta(milliseconds=settings.ordering_window_ms)
        remind = time.monotonic() - self._last_reminders >= settings.review_check_seconds
        fanned = 0
        # Most rounds have nothing to fan out: a read says so without the writer's lock.
        if remind or self._fan_out_due(now - window):
            with self._db.write() as conn:
                fanned = fan_out(conn, self._policy, now, window, settings.worker_batch_size)
                if remind:
                    plan_review_reminders(conn, now.date(), settings.review_reminder_days, now)
                    self._last_reminders = time.monotonic()
        jobs = self._claim(now)
        for job in jobs:
            self._pool.submit(self._deliver, job)
        sent = self._send_emails(now)
        if time.monotonic() - self._last_backlog >= _BACKLOG_EVERY_S:
            with self._db.read() as conn:
                BACKLOG.set(backlog(conn))
            self._last_backlog = time.monotonic()
        return bool(recorded or fanned or jobs or sent)

    def _fan_out_due(self, journalled_by: datetime) -> bool:
        with self._db.read() as conn:
            due = conn.execute(_FAN_OUT_DUE, {"journalled_by": journalled_by}).first()
            return due is not None

    # --- claiming ---------------------------------------------------------------------

    def _capacity(self) -> int:
        with self._lock:
            return self._settings.worker_concurrency - sum(self._in_flight.values())

    def _claim(self, now: datetime) -> list[Job]:
        capacity = self._capacity()
        if capacity <= 0:
            return []
        settings = self._settings
        lease_until = now + timedelta(milliseconds=settings.delivery_lease_ms)
        with self._lock:
            taken = dict(self._in_flight)
        busy = [name for name, count in taken.items() if count >= settings.endpoint_max_in_flight]
        earlier = deliveries.alias("earlier")
        held_back = exists().where(
            earlier.c.subscription_id == deliveries.c.subscription_id,
            earlier.c.family_id == deliveries.c.family_id,
            earlier.c.status.in_(OPEN_STATUSES),
            or_(
                earlier.c.occurred_at < deliveries.c.occurred_at,
                and_(
                    earlier.c.occurred_at == deliveries.c.occurred_at,
                    earlier.c.id < deliveries.c.id,
                ),
            ),
        )
        columns = (
            deliveries.c.id,
            deliveries.c.subscription_id,
            deliveries.c.message_id,
            deliveries.c.event_id,
            deliveries.c.event_type,
            deliveries.c.body,
            deliveries.c.traceparent,
            deliveries.c.tracestate,
            deliveries.c.attempts,
            deliveries.c.first_attempt_at,
            deliveries.c.next_attempt_at,
            subscriptions.c.channel,
            subscriptions.c.url,
            subscriptions.c.endpoint,
            subscriptions.c.topic,
            subscriptions.c.secret_encrypted,
            subscriptions.c.previous_secret_encrypted,
            subscriptions.c.previous_secret_until,
        )

        def due(status: str):
            # One status at a time, so the (status, next_attempt_at) index yields the rows
            # in order and the scan stops at the limit, however long the backlog.
            return (
                select(*columns)
                .join(
                    subscriptions,
                    subscriptions.c.subscription_id == deliveries.c.subscription_id,
                )
                .where(
                    deliveries.c.status == status,
                    deliveries.c.next_attempt_at <= now,
                    or_(deliveries.c.leased_until.is_(None), deliveries.c.leased_until < now),
                    subscriptions.c.status == "active",
                    # Endpoints that cannot take a delivery now are left out here, so that
                    # a dead or slow endpoint's backlog never fills the others' batch.
                    subscriptions.c.endpoint.not_in(
                        select(endpoints.c.endpoint).where(
                            endpoints.c.state != "closed", endpoints.c.open_until > now
                        )
                    ),
                    subscriptions.c.endpoint.not_in(busy),
                    ~held_back,
                )
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(capacity * 4)
            )

        jobs: list[Job] = []
        with self._db.write() as conn:
            rows = sorted(
                (row for status in OPEN_STATUSES for row in conn.execute(due(status))),
                key=lambda row: (row.next_attempt_at, row.id),
            )
            names = {r.endpoint for r in rows}
            circuits = {
                row.endpoint: row
                for row in conn.execute(select(endpoints).where(endpoints.c.endpoint.in_(names)))
            }
            probing: set[str] = set()
            chosen = []
            for row in rows:
                if len(chosen) >= capacity:
                    break
                name = row.endpoint
                circuit = circuits.get(name)
                if circuit is not None and circuit.state != "closed":
                    if name in probing:
                        continue
                    # Cool-down over: one delivery probes the endpoint (half-open).
                    probing.add(name)
                    conn.execute(
                        update(endpoints)
                        .where(endpoints.c.endpoint == name)
                        .values(state="half_open", open_until=lease_until, updated_at=now)
                    )
                elif taken.get(name, 0) >= settings.endpoint_max_in_flight:
                    continue
                taken[name] = taken.get(name, 0) + 1
                chosen.append(row)
            if chosen:
                # One statement leases them all; a row settled or claimed by someone else
                # since it was read is not returned, and is not ours to send.
                claimed = set(
                    conn.execute(
                        update(deliveries)
                        .where(
                            deliveries.c.id.in_([row.id for row in chosen]),
                            deliveries.c.status.in_(OPEN_STATUSES),
                            or_(
                                deliveries.c.leased_until.is_(None),
                                deliveries.c.leased_until < now,
                            ),
                        )
                        .values(leased_until=lease_until)
                        .returning(deliveries.c.id)
                    ).scalars()
                )
                jobs = [self._job(row, row.endpoint, now) for row in chosen if row.id in claimed]
        with self._lock:
            for job in jobs:
                self._in_flight[job.endpoint] = self._in_flight.get(job.endpoint, 0) + 1
        return jobs

    def _open(self, sealed: str) -> str:
        secret = self._opened.get(sealed)
        if secret is None:
            secret = self._box.open(sealed)
            if len(self._opened) >= _OPENED_SECRETS:
                self._opened.clear()
            self._opened[sealed] = secret
        return secret

    def _job(self, row: Any, name: str, now: datetime) -> Job:
        sealed = [row.secret_encrypted] if row.secret_encrypted else []
        if (
            row.previous_secret_encrypted
            and row.previous_secret_until
            and row.previous_secret_until > now
        ):
            sealed.append(row.previous_secret_encrypted)
        unsigned_because = None
        try:
            secrets = [self._open(s) for s in sealed]
        except InvalidToken:
            # Never sent unsigned: the attempt fails, and is retried, until the keys are right.
            secrets = []
            unsigned_because = (
                "the signing secret opens with none of the keys in "
                f"{self._box.source}; the webhook was not sent"
            )
        return Job(
            delivery_pk=row.id,
            subscription_id=row.subscription_id,
            message_id=row.message_id,
            event_id=row.event_id,
            event_type=row.event_type,
            body=row.body,
            channel=row.channel,
            endpoint=name,
            url=row.url,
            topic=row.topic,
            secrets=tuple(secrets),
            attempts=row.attempts,
            first_attempt_at=row.first_attempt_at,
            unsigned_because=unsigned_because,
            traceparent=row.traceparent,
            tracestate=row.tracestate,
        )

    # --- sending ----------------------------------------------------------------------

    def _deliver(self, job: Job) -> None:
        """Attempt one delivery; the loop records the outcome with others in one transaction."""
        try:
            attempt = self._post(job) if job.channel == "webhook" else self._produce(job)
        except Exception as exc:
            _log_failure("a delivery attempt failed unexpectedly: %s", exc)
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

    def _record_results(self) -> int:
        """Record every finished attempt in one transaction; returns how many.

        One transaction for many attempts, rather than one each, keeps SQLite's single
        writer free for the consumer and fan-out. Should it fail, the deliveries'
        leases expire and they are attempted again: nothing is lost.
        """
        finished: list[tuple[Job, Attempt, datetime]] = []
        while True:
            try:
                finished.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not finished:
            return 0
        try:
            with self._db.write() as conn:
                outcomes = self._record(conn, finished)
            for (job, attempt, _), (outcome, state) in zip(finished, outcomes, strict=True):
                DELIVERIES.labels(outcome, job.channel).inc()
                if not attempt.ok:
                    FAILURES.labels(attempt.reason).inc()
                CIRCUIT_OPEN.labels(job.endpoint).set(0 if state == "closed" else 1)
        except Exception as exc:
            _log_failure("recording %d delivery attempts failed: %s", exc, len(finished))
        finally:
            with self._lock:
                for job, _, _ in finished:
                    self._in_flight[job.endpoint] -= 1
        return len(finished)

    def _record(self, conn, finished: list[tuple[Job, Attempt, datetime]]) -> list[tuple[str, str]]:
        """Log the attempts and settle their deliveries, in a few statements whatever their
        number; returns each one's outcome and its endpoint's circuit state after it."""
        settings = self._settings
        logged: list[dict[str, Any]] = []
        settled: dict[str, list[dict[str, Any]]] = {}
        outcomes: list[str] = []
        gone: dict[str, Job] = {}
        for job, attempt, now in finished:
            attempts = job.attempts + 1
            first = job.first_attempt_at or now
            error = attempt.error[:_ERROR_CHARS] if attempt.error else None
            values: dict[str, Any] = {
                "attempts": attempts,
                "first_attempt_at": first,
                "last_attempt_at": now,
                "last_status_code": attempt.status_code,
                "last_error": error,
                "leased_until": None,
            }
            if attempt.ok:
                outcome = "delivered"
                values |= {"status": "delivered", "delivered_at": now}
            elif attempt.status_code == _GONE and job.channel == "webhook":
                # The receiver says the endpoint is gone for good: stop sending to it, but
                # keep the delivery first in line, its retry window not yet started, for
                # when the partner resumes the subscription.
                outcome = "endpoint_gone"
                gone.setdefault(job.subscription_id, job)
                values |= {"status": "pending", "next_attempt_at": now, "first_attempt_at": None}
            elif (now - first).total_seconds() >= settings.retry_for_seconds:
                outcome = "dead_lettered"
                values |= {"status": "failed"}
            else:
                outcome = "retrying"
                wait = backoff(
                    attempts, settings.retry_base_ms, settings.retry_max_delay_ms, self._rng
                )
                values |= {"status": "retrying", "next_attempt_at": now + wait}
            outcomes.append(outcome)
            settled.setdefault(outcome, []).append(
                {"pk": job.delivery_pk} | {f"new_{k}": v for k, v in values.items()}
            )
            logged.append(
                {
                    "delivery_id": job.delivery_pk,
                    "attempted_at": now,
                    "outcome": "delivered" if attempt.ok else "failed",
                    "status_code": attempt.status_code,
                    "latency_ms": attempt.latency_ms,
                    "error": error,
                }
            )
        conn.execute(insert(delivery_attempts), logged)
        for rows in settled.values():
            # The rows of one outcome set the same columns: one executemany each.
            columns = [key.removeprefix("new_") for key in rows[0] if key != "pk"]
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == bindparam("pk"))
                .values({column: bindparam(f"new_{column}") for column in columns}),
                rows,
            )
        if gone:
            self._pause_gone(conn, gone, finished[-1][2])
        # An endpoint answering 410 is up: it counts as no failure for its circuit.
        states = self._trip(
            conn,
            [
                (job.endpoint, a.ok or outcome == "endpoint_gone", now)
                for (job, a, now), outcome in zip(finished, outcomes, strict=True)
            ],
        )
        return list(zip(outcomes, states, strict=True))

    @staticmethod
    def _pause_gone(conn, gone: dict[str, Job], now: datetime) -> None:
        """Pause the subscriptions whose endpoint answered 410 Gone."""
        paused = conn.execute(
            update(subscriptions)
            .where(
                subscriptions.c.subscription_id.in_(list(gone)),
                subscriptions.c.status == "active",
            )
            .values(status="paused", paused_reason="endpoint_gone", updated_at=now)
            .returning(subscriptions.c.subscription_id, subscriptions.c.partner_id)
        ).all()
        for row in paused:
            SUBSCRIPTIONS_PAUSED.labels("endpoint_gone").inc()
            log.warning(
                "subscription %s of %s paused: %s answered 410 Gone",
                row.subscription_id,
                row.partner_id,
                gone[row.subscription_id].endpoint,
            )

    def _trip(self, conn, results: list[tuple[str, bool, datetime]]) -> list[str]:
        """Update the endpoints' circuits after attempts, in order; returns the state of
        each attempt's endpoint after it."""
        settings = self._settings
        names = {name for name, _, _ in results}
        stored = {
            row.endpoint: row
            for row in conn.execute(select(endpoints).where(endpoints.c.endpoint.in_(names)))
        }
        circuits: dict[str, dict[str, Any]] = {
            name: {
                "state": row.state,
                "consecutive_failures": row.consecutive_failures,
                "open_until": row.open_until,
                "updated_at": row.updated_at,
            }
            for name, row in stored.items()
        }
        states = []
        for name, ok, now in results:
            circuit = circuits.get(name)
            if ok:
                state, failures, until = "closed", 0, None
            else:
                failures = (circuit["consecutive_failures"] if circuit else 0) + 1
                probing = circuit is not None and circuit["state"] == "half_open"
                if probing or failures >= settings.circuit_failure_threshold:
                    state = "open"
                    until = now + timedelta(milliseconds=settings.circuit_cooldown_ms)
                    if not probing and (circuit is None or circuit["state"] == "closed"):
                        log.warning("circuit opened for %s after %d failures", name, failures)
                else:
                    state, until = "closed", None
            circuits[name] = {
                "state": state,
                "consecutive_failures": failures,
                "open_until": until,
                "updated_at": now,
            }
            states.append(state)
        for name in names:
            values = circuits[name]
            if name not in stored:
                conn.execute(insert(endpoints), {"endpoint": name, **values})
                continue
            row = stored[name]
            unchanged = (row.state, row.consecutive_failures, row.open_until) == (
                values["state"],
                values["consecutive_failures"],
                values["open_until"],
            )
            if not unchanged:  # a closed circuit staying closed is the common case
                conn.execute(update(endpoints).where(endpoints.c.endpoint == name).values(values))
        return states

    # --- e-mail -----------------------------------------------------------------------

    def _send_emails(self, now: datetime) -> int:
        """Claim due e-mails within the pool's spare capacity and send them; returns how many."""
        capacity = self._capacity()
        if capacity <= 0:
            return 0
        lease_until = now + timedelta(milliseconds=self._settings.delivery_lease_ms)
        claimed = []
        # Most rounds have no e-mail to send: a read says so without the writer's lock.
        with self._db.read() as conn:
            if not conn.execute(
                select(emails.c.message_key)
                .where(emails.c.status == "pending", emails.c.next_attempt_at <= now)
                .limit(1)
            ).first():
                return 0
        with self._db.write() as conn:
            due = conn.execute(
                select(emails)
                .where(
                    emails.c.status == "pending",
                    emails.c.next_attempt_at <= now,
                    or_(emails.c.leased_until.is_(None), emails.c.leased_until < now),
                )
                .order_by(emails.c.next_attempt_at)
                .limit(capacity)
            ).all()
            for row in due:
                taken = conn.execute(
                    update(emails)
                    .where(
                        emails.c.message_key == row.message_key,
                        emails.c.recipient == row.recipient,
                        emails.c.status == "pending",
                        or_(emails.c.leased_until.is_(None), emails.c.leased_until < now),
                    )
                    .values(leased_until=lease_until)
                ).rowcount
                if taken:
                    claimed.append(row)
        with self._lock:
            self._in_flight[_MAIL] = self._in_flight.get(_MAIL, 0) + len(claimed)
        for row in claimed:
            self._pool.submit(self._send_email, row)
        return len(claimed)

    def _send_email(self, row: Any) -> None:
        settings = self._settings
        try:
            message = self._mailer.message(row.message_key, row.recipient, row.subject, row.body)
            error = None
            try:
                self._mailer.send(message)
            except (OSError, ValueError) as exc:
                error = describe_error(exc)[:_ERROR_CHARS]
            now = self._clock()
            attempts = row.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "leased_until": None}
            if error is None:
                values |= {"status": "sent", "sent_at": now, "last_error": None}
            elif (now - row.created_at).total_seconds() >= settings.retry_for_seconds:
                values |= {"status": "failed", "last_error": error}
            else:
                wait = backoff(
                    attempts, settings.retry_base_ms, settings.retry_max_delay_ms, self._rng
                )
                values |= {"last_error": error, "next_attempt_at": now + wait}
            with self._db.write() as conn:
                conn.execute(
                    update(emails)
                    .where(
                        emails.c.message_key == row.message_key, emails.c.recipient == row.recipient
                    )
                    .values(values)
                )
            EMAILS.labels("sent" if error is None else "failed").inc()
        except Exception as exc:
            _log_failure("sending an e-mail failed: %s", exc)
        finally:
            with self._lock:
                self._in_flight[_MAIL] -= 1


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


def _log_failure(message: str, exc: BaseException, *args: object) -> None:
    """Logs `message` (its last `%s` the error) with the error's safe description and stack:
    an exception's own text may quote a family's values."""
    log.error(message, *args, describe_error(exc), extra={"stack": error_stack(exc)})


def _span_failed(span: Span, exc: BaseException) -> None:
    kind = type(exc)
    span.set_attribute(
        "error.type",
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}",
    )
    span.set_status(StatusCode.ERROR)
