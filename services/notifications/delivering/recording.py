"""Recording: every finished attempt in one transaction, its retry or dead letter, 410 Gone."""

from __future__ import annotations

import queue
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update

from notifications.delivering.common import (
    _ERROR_CHARS,
    _GONE,
    CIRCUIT_OPEN,
    DELIVERIES,
    FAILURES,
    SUBSCRIPTIONS_PAUSED,
    Attempt,
    Job,
    backoff,
    log,
    log_failure,
)
from notifications.tables import (
    deliveries,
    delivery_attempts,
    disclosures,
    subscriptions,
)

# Attempts whose body reached the partner's side, or may have: a refusal by status still
# delivered the request, and a timeout may have. Nothing went out on a refused
# connection, an unsigned webhook or a broker that never took the record.
_DISCLOSED_ON = ("status", "timeout")


class Recording:
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
            log_failure("recording %d delivery attempts failed: %s", exc, len(finished))
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
        disclosed = [
            {
                "family_id": job.family_id,
                "case_id": job.case_id,
                "partner_id": job.partner_id,
                "subscription_id": job.subscription_id,
                "channel": job.channel,
                "message_id": job.message_id,
                "event_id": job.event_id,
                "event_type": job.event_type,
                "disclosed_at": now,
                **job.disclosure,
            }
            for job, attempt, now in finished
            if job.disclosure is not None
            and (attempt.ok or (job.channel == "webhook" and attempt.reason in _DISCLOSED_ON))
        ]
        if disclosed:
            conn.execute(insert(disclosures), disclosed)
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
