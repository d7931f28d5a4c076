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
4. send due e-mails;
5. now and then, purge the journal, deliveries and attempts older than the retention
   period (`retention_days`).

Each claimed delivery is asked of the sharing policy again (membership and consent as
they stand then): what it no longer allows is withheld, never sent.

Each webhook attempt is a CLIENT span whose parent is the trace context stored
with its delivery (the consumer's span for the event), and sends its own context
as the W3C `traceparent` header, so one referral's trace reaches the partner.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from kafka import KafkaProducer
from sqlalchemy import select

from hub.clock import utc_now
from hub.db import Database
from hub.encompass_links import link_key
from hub.schools import SchoolRegistry
from hub.settings import HubSettings
from notifications.delivering.circuit import Circuit
from notifications.delivering.claiming import Claiming
from notifications.delivering.common import (
    _BACKLOG_EVERY_S,
    BACKLOG,
    CIRCUIT_OPEN,
    Attempt,
    Job,
    log_failure,
)
from notifications.delivering.email import Emailing
from notifications.delivering.recording import Recording
from notifications.delivering.sending import Sending, webhook_client_for
from notifications.encryption import SecretBox
from notifications.fanout import backlog, fan_out, fan_out_due, purge
from notifications.mail import EncompassMail, Mailer, plan_review_reminders
from notifications.policy import SharingPolicy
from notifications.settings import NotificationsSettings
from notifications.tables import (
    endpoints,
)


class DeliveryWorker(Claiming, Sending, Recording, Circuit, Emailing):
    """The loop; its parts are in `notifications.delivering` (claiming, sending,
    recording, circuit, e-mail)."""

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
        self._encompass = EncompassMail(
            SchoolRegistry.load(settings.schools_file),
            settings.front_door_email,
            link_key(hub_settings),
            settings.intake_public_url,
        )
        self._http = webhook_client_for(settings)
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

    def wake(self) -> None:
        """Look for work now (an event was journalled), not at the next poll."""
        self._wake.set()

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
                log_failure("delivery loop failed; trying again: %s", exc)
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
        max_wait = timedelta(milliseconds=settings.ordering_max_wait_ms)
        remind = time.monotonic() - self._last_reminders >= settings.review_check_seconds
        fanned = 0
        # Most rounds have nothing to fan out: a read says so without the writer's lock.
        if remind or self._fan_out_due(now, max_wait):
            retention = timedelta(days=settings.retention_days)
            with self._db.write() as conn:
                fanned = fan_out(
                    conn,
                    self._policy,
                    now,
                    max_wait,
                    settings.worker_batch_size,
                    retention,
                    self._encompass,
                )
                if remind:
                    plan_review_reminders(conn, now.date(), settings.review_reminder_days, now)
                    purge(conn, now - retention)
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

    def _fan_out_due(self, now: datetime, max_wait: timedelta) -> bool:
        with self._db.read() as conn:
            return fan_out_due(conn, now, max_wait)
