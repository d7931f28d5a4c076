"""The outbox relay: publishes stored events to Kafka in position order, then marks them sent.

Events reach the outbox in the same transaction as the event store, so an event
is either stored and queued or not at all; the relay only ever publishes what is
committed, retries for as long as the broker is away, and removes a row only
after the broker acknowledged it (acks=all). A crash between the acknowledgement
and the removal publishes the event again: consumers deduplicate by event id.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, delete, func, select, text

from hub.contracts.envelope import to_kafka
from hub.db import Database
from hub.envelopes import envelope_of
from hub.kafka import ensure_topics, new_producer
from hub.privacy import describe_error
from hub.settings import HubSettings
from hub.store import RECORDED_COLUMNS, recorded_from_row
from hub.tables import event_store, outbox

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge(
    "earlyhelp_outbox_backlog", "Stored events not yet acknowledged by Kafka", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "earlyhelp_outbox_published_total", "Events the broker acknowledged", ["service"]
)
OUTBOX_FAILURES = Counter(
    "earlyhelp_outbox_publish_failures_total", "Publish attempts that failed", ["service"]
)
OUTBOX_LEADER = Gauge(
    "earlyhelp_outbox_leader",
    "1 while this process's relay holds its database's publishing lock",
    ["service"],
)

_BACKLOG_REFRESH_S = 1.0
# Any constant will do, as long as every replica of a service uses the same one.
_RELAY_LOCK_KEY = 0x52454C4159  # "RELAY"
# Acknowledged rows are removed in bulk, at most this often or this many at a time:
# one delete per tiny batch would cost the service's single SQLite writer dearly.
_PURGE_INTERVAL_S = 0.1
_PURGE_ROWS = 1000


class LeadershipLost(Exception):
    """The relay's lock session ended or no longer holds the lock: it must stop publishing."""


class OutboxRelay:
    def __init__(self, db: Database, settings: HubSettings) -> None:
        self._db = db
        self._settings = settings
        self._service = settings.service_name
        OUTBOX_FAILURES.labels(self._service)  # at 0 from the start: "none yet", not no data
        self._wake = threading.Event()
        self._producer: KafkaProducer | None = None
        self._backlog_measured_at = 0.0
        # Positions the broker acknowledged whose outbox rows are not yet removed.
        self._acknowledged: list[int] = []
        self._purged_at = 0.0
        # PostgreSQL: the connection holding this relay's leadership lock, if it leads.
        self._leadership: Connection | None = None

    def notify(self) -> None:
        """Tell the relay that a transaction just committed new events."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Publish until `stop` is set; never gives up on the broker."""
        backoff_s = 0.1
        max_backoff_s = self._settings.relay_retry_backoff_max_ms / 1000
        idle_s = self._settings.relay_idle_poll_ms / 1000
        linger_s = self._settings.relay_linger_ms / 1000
        while not stop.is_set():
            self._wake.clear()
            try:
                # Inside the try: a database that is briefly away must not end the relay.
                self._refresh_backlog()
                if not self._leads():
                    stop.wait(idle_s)
                    continue
                published = self.publish_batch()
                backoff_s = 0.1
            except Exception as exc:  # broker away, fenced producer, database busy
                OUTBOX_FAILURES.labels(self._service).inc()
                log.warning(
                    "outbox publish failed; retrying in %.1fs: %s",
                    backoff_s,
                    describe_error(exc),
                    extra={"error_type": type(exc).__name__},
                )
                self._discard_producer()
                self._resign()
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, max_backoff_s)
                continue
            if published < self._settings.relay_batch_size and self._wake.wait(idle_s):
                # Let the commits of concurrent requests gather into one batch.
                stop.wait(linger_s)

    def drain(self, timeout_s: float) -> bool:
        """Publish what is queued, for a clean shutdown; True when the outbox is empty."""
        deadline = time.monotonic() + timeout_s
        backoff_s = 0.1
        while time.monotonic() < deadline:
            try:
                if not self._leads():
                    return True  # the relay that leads sends them
                if self.publish_batch() == 0:
                    self._purge(force=True)
                    return True
                backoff_s = 0.1
            except Exception as exc:  # the broker away for a moment: try until the deadline
                OUTBOX_FAILURES.labels(self._service).inc()
                log.warning(
                    "outbox drain failed; retrying in %.1fs: %s", backoff_s, describe_error(exc)
                )
                self._discard_producer()
                self._resign()
                time.sleep(max(min(backoff_s, deadline - time.monotonic()), 0))
                backoff_s = min(backoff_s * 2, 1.0)
        return False

    @property
    def leads(self) -> bool:
        """Whether this relay held its database's publishing lock when it last looked:
        after `drain`, whether it sent the outbox itself or left it to the leader."""
        return self._db.is_sqlite or self._leadership is not None

    def close(self) -> None:
        try:
            self._purge(force=True)
        except Exception as exc:  # the rows stay and are sent again: harmless
            log.warning("could not remove acknowledged outbox rows: %s", describe_error(exc))
        self._discard_producer()
        self._resign()

    def _leads(self) -> bool:
        """Whether this relay publishes for its database.

        Replicas of a service share one PostgreSQL database; only the holder of a
        session advisory lock publishes, so events go out once and in order. The
        lock goes with its connection, so a crashed leader hands over at once.
        SQLite is one process's database: its relay always leads.
        """
        if self._db.is_sqlite:
            OUTBOX_LEADER.labels(self._service).set(1)
            return True
        if self._leadership is not None:
            try:
                self._confirm_leadership()
                return True
            except Exception as exc:
                # Its session was ended (failover, idle timeout, pg_terminate_backend):
                # another replica may already lead; this one stops at once.
                log.warning(
                    "this relay lost its leadership for %s; it stops publishing",
                    self._service,
                    extra={"error_type": type(exc).__name__},
                )
                self._resign()
        conn = self._db.engine.connect()
        try:
            won = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": _RELAY_LOCK_KEY}
            ).scalar_one()
            conn.commit()
        except Exception:
            conn.close()
            raise
        if not won:
            conn.close()
            return False
        log.info("this relay now publishes for %s", self._service)
        self._leadership = conn
        OUTBOX_LEADER.labels(self._service).set(1)
        return True

    def _confirm_leadership(self) -> None:
        """Raise LeadershipLost unless the lock's own session still holds the lock.

        Asked of the very connection that took it: a connection whose session died
        would otherwise be reconnected by the pool to a new session without it.
        """
        conn = self._leadership
        if conn is None:
            raise LeadershipLost("no leadership session")
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": _RELAY_LOCK_KEY},
        ).scalar_one()
        conn.commit()
        if not held:
            raise LeadershipLost("the leadership session no longer holds the lock")

    def _resign(self) -> None:
        OUTBOX_LEADER.labels(self._service).set(0)
        if self._leadership is not None:
            try:
                # Invalidate rather than close: a closed connection goes back to the
                # pool with its session, and the lock, still alive.
                self._leadership.invalidate()
            except Exception as exc:
                log.debug("closing the leadership connection: %s", exc)
            self._leadership = None

    def publish_batch(self) -> int:
        """Publish the oldest queued events; returns how many the broker acknowledged."""
        query = (
            select(outbox.c.topic, *RECORDED_COLUMNS)
            .join(event_store, event_store.c.position == outbox.c.position)
            .order_by(outbox.c.position)
            .limit(self._settings.relay_batch_size)
        )
        if self._acknowledged:
            query = query.where(outbox.c.position.not_in(self._acknowledged))
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            self._purge()
            return 0
        producer = self._ensure_producer({row.topic for row in rows})
        futures = []
        for row in rows:
            record = to_kafka(envelope_of(recorded_from_row(row), self._service))
            futures.append(
                producer.send(row.topic, key=record.key, value=record.value, headers=record.headers)
            )
        producer.flush(timeout=self._settings.kafka_request_timeout_ms / 1000)
        for future in futures:
            future.get(timeout=0)  # raises the send's error, if any
        self._acknowledged.extend(row.position for row in rows)
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        # Where replicas share the database, a relay that loses its lock may leave its
        # acknowledged rows for the next leader to send again: removing them batch by
        # batch bounds that to the one batch in flight.
        self._purge(force=not self._db.is_sqlite)
        return len(rows)

    def _purge(self, *, force: bool = False) -> None:
        """Remove the rows of acknowledged events (a crash before this only resends them)."""
        now = time.monotonic()
        due = len(self._acknowledged) >= _PURGE_ROWS or now - self._purged_at >= _PURGE_INTERVAL_S
        if not self._acknowledged or not (due or force):
            return
        with self._db.write() as conn:
            conn.execute(delete(outbox).where(outbox.c.position.in_(self._acknowledged)))
        self._acknowledged.clear()
        self._purged_at = now

    def backlog(self) -> int:
        """Queued events the broker has not acknowledged yet."""
        with self._db.read() as conn:
            queued = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        return queued - len(self._acknowledged)

    def _refresh_backlog(self) -> None:
        now = time.monotonic()
        if now - self._backlog_measured_at >= _BACKLOG_REFRESH_S:
            self._backlog_measured_at = now
            OUTBOX_BACKLOG.labels(self._service).set(self.backlog())

    def _ensure_producer(self, topics: set[str]) -> KafkaProducer:
        if self._producer is None:
            # A broker that lost its state (Tansu restarts empty) needs the topics back
            # before anything is produced, or it would auto-create them its own way.
            ensure_topics(self._settings, topics)
            self._producer = new_producer(self._settings, "relay")
        return self._producer

    def _discard_producer(self) -> None:
        # A producer that failed may be fenced for good (UnknownProducerId after a
        # broker restart): the next attempt starts with a new one.
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:
                log.debug("closing a failed producer: %s", exc)
            self._producer = None
