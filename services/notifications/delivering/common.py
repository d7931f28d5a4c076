"""What the delivery worker's parts share: metrics, the job and attempt records, backoff."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge

from hub.observability import tracer
from hub.privacy import describe_error, error_stack

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
WITHHELD = Counter(
    "earlyhelp_webhook_withheld_total",
    "Deliveries withheld at the moment of sending: the sharing policy no longer allows them",
)
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
    partner_id: str = ""
    family_id: str = ""
    case_id: str | None = None
    # What the disclosure record keeps of a send, when the body holds restricted detail.
    disclosure: dict | None = None


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    reason: str | None


def log_failure(message: str, exc: BaseException, *args: object) -> None:
    """Logs `message` (its last `%s` the error) with the error's safe description and stack:
    an exception's own text may quote a family's values."""
    log.error(message, *args, describe_error(exc), extra={"stack": error_stack(exc)})


def backoff(attempts: int, base_ms: int, max_ms: int, rng: random.Random) -> timedelta:
    """Full jitter: a uniform wait between 0 and base * 2^(attempts-1), capped."""
    ceiling = min(max_ms, base_ms * 2 ** min(attempts - 1, 40))
    return timedelta(milliseconds=rng.uniform(0, ceiling))
