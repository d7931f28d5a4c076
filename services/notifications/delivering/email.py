"""E-mail: due messages claimed within the pool's spare capacity and sent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update

from hub.privacy import describe_error
from notifications.delivering.common import (
    _ERROR_CHARS,
    _MAIL,
    EMAILS,
    backoff,
    log_failure,
)
from notifications.tables import (
    disclosures,
    emails,
)


class Emailing:
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
                if error is None and row.disclosure:
                    # Sent: restricted detail left the hub, so it goes on the record.
                    conn.execute(
                        insert(disclosures),
                        json.loads(row.disclosure)
                        | {
                            "case_id": None,
                            "subscription_id": "",
                            "channel": "email",
                            "message_id": message["Message-ID"],
                            "disclosed_at": now,
                        },
                    )
            EMAILS.labels("sent" if error is None else "failed").inc()
        except Exception as exc:
            log_failure("sending an e-mail failed: %s", exc)
        finally:
            with self._lock:
                self._in_flight[_MAIL] -= 1
