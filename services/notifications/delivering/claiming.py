"""Claiming: due deliveries heading their family's queue, leased so no replica sends them twice,
each asked of the sharing policy again as things stand at that moment.

A delivery the policy no longer allows (its partner left the case's team, the case's
consent was withdrawn or narrowed, an override ended or lapsed) is `withheld`: never
sent, its attempt log saying so. One it still allows goes with what it allows now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import and_, bindparam, exists, insert, or_, select, update

from notifications.delivering.common import (
    _OPENED_SECRETS,
    WITHHELD,
    Job,
)
from notifications.fanout import (
    OPEN_STATUSES,
    JournalEntry,
    allowed,
    journal_entry,
    relations,
)
from notifications.policy import Relation
from notifications.tables import (
    deliveries,
    delivery_attempts,
    endpoints,
    subscriptions,
)

_COLUMNS = (
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
    deliveries.c.family_id,
    subscriptions.c.partner_id,
    subscriptions.c.partner_type,
    subscriptions.c.event_types,
    subscriptions.c.channel,
    subscriptions.c.url,
    subscriptions.c.endpoint,
    subscriptions.c.topic,
    subscriptions.c.secret_encrypted,
    subscriptions.c.previous_secret_encrypted,
    subscriptions.c.previous_secret_until,
)


def _due_statement(status: str):
    """Due deliveries of one status, oldest first, whose endpoint can take one now and
    that head their family's queue for their subscription; built once, given `now`, the
    endpoints already busy and the limit at execution."""
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
    now = bindparam("now")
    # One status at a time, so the (status, next_attempt_at) index yields the rows in
    # order and the scan stops at the limit, however long the backlog.
    return (
        select(*_COLUMNS)
        .join(subscriptions, subscriptions.c.subscription_id == deliveries.c.subscription_id)
        .where(
            deliveries.c.status == status,
            deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.leased_until.is_(None), deliveries.c.leased_until < now),
            subscriptions.c.status == "active",
            # Endpoints that cannot take a delivery now are left out here, so that a dead
            # or slow endpoint's backlog never fills the others' batch.
            subscriptions.c.endpoint.not_in(
                select(endpoints.c.endpoint).where(
                    endpoints.c.state != "closed", endpoints.c.open_until > now
                )
            ),
            subscriptions.c.endpoint.not_in(bindparam("busy", expanding=True)),
            ~held_back,
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(bindparam("limit"))
    )


_DUE = [_due_statement(status) for status in OPEN_STATUSES]


class Claiming:
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
        busy_now = {"now": now, "busy": busy, "limit": capacity * 4}
        jobs: list[Job] = []
        with self._db.write() as conn:
            rows = sorted(
                (row for due in _DUE for row in conn.execute(due, busy_now)),
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
                # Asked once per event and partner in this transaction, however many of the
                # partner's subscriptions want the event: the facts cannot differ between them.
                facts: dict[str, tuple[JournalEntry | None, Callable[[str], Relation]]] = {}
                for row in chosen:
                    if row.id not in claimed:
                        continue
                    now_allowed = self._allowed_now(conn, row, now, facts)
                    if now_allowed is None:
                        continue
                    jobs.append(self._job(row, row.endpoint, now, now_allowed))
        with self._lock:
            for job in jobs:
                self._in_flight[job.endpoint] = self._in_flight.get(job.endpoint, 0) + 1
        return jobs

    def _allowed_now(
        self,
        conn,
        row: Any,
        now: datetime,
        facts: dict[str, tuple[JournalEntry | None, Callable[[str], Relation]]],
    ):
        """What the policy lets the delivery carry now, the stored body brought up to date;
        None, and the delivery withheld, when it lets nothing go. `facts` keeps each event's
        journal entry and its partners' relations for the rest of the claim."""
        if row.event_id not in facts:
            entry = journal_entry(conn, row.event_id)
            relation_of = relations(conn, entry, now.date()) if entry is not None else None
            facts[row.event_id] = (entry, relation_of)
        entry, relation_of = facts[row.event_id]
        found = (
            allowed(self._policy, row, entry, relation_of)
            if entry is not None and relation_of is not None
            else None
        )
        if found is None:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(status="withheld", leased_until=None)
            )
            conn.execute(
                insert(delivery_attempts),
                {
                    "delivery_id": row.id,
                    "attempted_at": now,
                    "outcome": "withheld",
                    "status_code": None,
                    "latency_ms": 0,
                    "error": "withheld: the sharing policy no longer allows it",
                },
            )
            WITHHELD.inc()
            return None
        if found.body != row.body:
            conn.execute(
                update(deliveries).where(deliveries.c.id == row.id).values(body=found.body)
            )
        return found

    def _open(self, sealed: str) -> str:
        secret = self._opened.get(sealed)
        if secret is None:
            secret = self._box.open(sealed)
            if len(self._opened) >= _OPENED_SECRETS:
                self._opened.clear()
            self._opened[sealed] = secret
        return secret

    def _job(self, row: Any, name: str, now: datetime, now_allowed) -> Job:
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
            body=now_allowed.body,
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
            partner_id=row.partner_id,
            family_id=row.family_id,
            case_id=now_allowed.shared.data.get("case_id"),
            disclosure=now_allowed.disclosure(),
        )
