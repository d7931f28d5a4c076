"""From journalled events to deliveries: who may receive each event, and what of it.

Fan-out reads the journal in the order events were consumed and, for each
subscription that wants the event type and exists since the event happened,
asks the policy what that partner may see given what the hub knows of the
family. An allowed event becomes one delivery row per subscription, holding the
minimised CloudEvent; the row's key (subscription, event) makes fan-out, replays
and projection rebuilds idempotent, and gives the delivery its stable webhook-id.

Kafka keeps a family's events in order within one service's topic only, so the
consumer may read allocation's CaseAllocated before intake's triage that opened
the case. Fan-out therefore restores the order across topics: an event waits in
the journal until its family is known (its referral or step-down consumed) and,
for an event about a case, until the case's opening is known, so the policy is
never asked without its facts; and it waits `ordering_window_ms` after being
consumed, then goes out in the order events happened, so events of one family
consumed from different topics within that window reach each subscriber in order
(and a family's events are fanned out strictly in that order: one waiting for
its facts holds back the family's later ones).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select, update

from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.intake import IntakeEvent
from hub.contracts.registry import EVENT_TYPES
from hub.sql import insert_if_absent
from notifications import mail
from notifications.policy import Partner, Relation, Shared, SharingPolicy, share
from notifications.tables import (
    deliveries,
    event_journal,
    family_facts,
    known_cases,
    referral_facts,
    referral_pupils,
    subscriptions,
)

SOURCE = "/earlyhelp/notifications"
_MESSAGE_NAMESPACE = uuid.UUID("4c6f0a52-8d0e-4f7b-9a54-2f2b7c1d9e10")
OPEN_STATUSES = ("pending", "retrying")


@dataclass(frozen=True)
class JournalEntry:
    event_id: str
    event_type: str
    family_id: str
    subject: str | None
    occurred_at: datetime
    data: dict[str, Any]
    # The consumer's span for the event, which its deliveries' attempts continue.
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def of(cls, row: Any) -> JournalEntry:
        return cls(
            event_id=row.event_id,
            event_type=row.event_type,
            family_id=row.family_id,
            subject=row.subject,
            occurred_at=row.occurred_at,
            data=json.loads(row.data),
            traceparent=row.traceparent,
            tracestate=row.tracestate,
        )


def message_id(subscription_id: str, event_id: str) -> str:
    """The webhook-id of one event for one subscription: the same on every attempt."""
    return "msg_" + uuid.uuid5(_MESSAGE_NAMESPACE, f"{subscription_id}/{event_id}").hex


def wants(patterns: Sequence[str], event_type: str) -> bool:
    """Exact event types, or prefixes such as `earlyhelp.case.*`."""
    return any(
        event_type == p or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns
    )


def partner_of(subscription: Any) -> Partner:
    kind = subscription.partner_type
    return Partner(subscription.partner_id, PartnerOrganisationType(kind) if kind else None)


def relation(conn: Connection, partner_id: str, entry: JournalEntry) -> Relation:
    """What the hub knows, now, of `partner_id`'s relation to the event's family."""
    referral_id, case_id = entry.data.get("referral_id"), entry.data.get("case_id")
    own = select(referral_facts.c.partner_reference).where(
        referral_facts.c.referrer_id == partner_id
    )
    if referral_id is not None:
        own = own.where(referral_facts.c.referral_id == referral_id)
    elif case_id is not None:
        own = own.where(referral_facts.c.case_id == case_id)
    else:
        own = None
    referred = (
        conn.execute(own.order_by(referral_facts.c.referral_id).limit(1)).first()
        if own is not None
        else None
    )
    family = referral_facts.alias("family")
    theirs = referral_facts.alias("theirs")
    family_pupil = referral_pupils.alias("family_pupil")
    their_pupil = referral_pupils.alias("their_pupil")
    pupil = conn.execute(
        select(
            exists().where(
                family.c.family_id == entry.family_id,
                family_pupil.c.referral_id == family.c.referral_id,
                their_pupil.c.upn == family_pupil.c.upn,
                theirs.c.referral_id == their_pupil.c.referral_id,
                theirs.c.referrer_id == partner_id,
            )
        )
    ).scalar()
    withdrawn = conn.execute(
        select(family_facts.c.consent_withdrawn).where(family_facts.c.family_id == entry.family_id)
    ).scalar()

    def any_referral(condition) -> bool:
        return bool(
            conn.execute(
                select(exists().where(referral_facts.c.family_id == entry.family_id, condition))
            ).scalar()
        )

    consented = any_referral(referral_facts.c.consent_to_share)
    overridden = any_referral(referral_facts.c.safeguarding_override)
    return Relation(
        referrer=referred is not None,
        pupil=bool(pupil),
        # Withdrawn consent ends sharing under consent; a recorded override still stands.
        consent_or_override=overridden or (consented and not withdrawn),
        partner_reference=referred.partner_reference if referred is not None else None,
    )


def cloud_event(entry: JournalEntry, shared: Shared, regulation: str) -> dict[str, Any]:
    """The event as a partner receives it: CloudEvents 1.0 structured JSON, labelled."""
    return {
        "specversion": "1.0",
        "id": entry.event_id,
        "source": SOURCE,
        "type": entry.event_type,
        "time": entry.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "subject": entry.subject,
        "partitionkey": entry.family_id,
        "datacontenttype": "application/json",
        "dataclassification": str(shared.classification),
        "datacategory": shared.category,
        "dataregulation": regulation,
        "data": shared.data,
    }


def _new_delivery(subscription_id: str, entry: JournalEntry, body: str, now: datetime) -> dict:
    return {
        "message_id": message_id(subscription_id, entry.event_id),
        "subscription_id": subscription_id,
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "family_id": entry.family_id,
        "occurred_at": entry.occurred_at,
        "body": body,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "traceparent": entry.traceparent,
        "tracestate": entry.tracestate,
    }


def relations(conn: Connection, entry: JournalEntry) -> Callable[[str], Relation]:
    """Each partner's relation to the event's family, looked up once per partner."""
    return cache(lambda partner_id: relation(conn, partner_id, entry))


def shared_with(
    policy: SharingPolicy,
    subscription: Any,
    entry: JournalEntry,
    relation_of: Callable[[str], Relation],
) -> str | None:
    """The delivery body for `subscription`, or None when its partner may not have the event."""
    if not wants(json.loads(subscription.event_types), entry.event_type):
        return None
    partner = partner_of(subscription)
    if not policy.may_ever_receive(partner, entry.event_type):
        return None
    shared = share(policy, partner, entry.event_type, entry.data, relation_of(partner.partner_id))
    if shared is None:
        return None
    return json.dumps(cloud_event(entry, shared, policy.regulation), separators=(",", ":"))


def _facts_known() -> tuple:
    """The journal's events whose family, and case if any, the service knows; and for a
    referral's events, the referral itself (a triage keyed by the family a match moved the
    referral to can overtake it)."""
    return (
        event_journal.c.family_id.in_(select(family_facts.c.family_id)),
        or_(
            event_journal.c.case_id.is_(None),
            event_journal.c.case_id.in_(select(known_cases.c.case_id)),
        ),
        or_(
            event_journal.c.event_type.not_in(_REFERRAL_EVENT_TYPES),
            event_journal.c.subject.in_(
                select(referral_facts.c.referral_id).where(referral_facts.c.received)
            ),
        ),
    )


_REFERRAL_EVENT_TYPES = sorted(
    event_type for event_type, model in EVENT_TYPES.items() if issubclass(model, IntakeEvent)
)


def _first_of_family_waiting() -> object:
    """No earlier event of the same family is still waiting for fan-out."""
    earlier = event_journal.alias("earlier")
    return ~exists().where(
        earlier.c.family_id == event_journal.c.family_id,
        earlier.c.fanned_out.is_(False),
        or_(
            earlier.c.occurred_at < event_journal.c.occurred_at,
            and_(
                earlier.c.occurred_at == event_journal.c.occurred_at,
                earlier.c.seq < event_journal.c.seq,
            ),
        ),
    )


def fan_out(
    conn: Connection, policy: SharingPolicy, now: datetime, window: timedelta, limit: int
) -> int:
    """Turn journalled events whose facts are known into deliveries and e-mails; returns
    how many."""
    rows = conn.execute(
        select(event_journal)
        .where(
            event_journal.c.fanned_out.is_(False),
            event_journal.c.journalled_at <= now - window,
            *_facts_known(),
            _first_of_family_waiting(),
        )
        .order_by(event_journal.c.occurred_at, event_journal.c.seq)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    subs = conn.execute(select(subscriptions)).all()
    for row in rows:
        entry = JournalEntry.of(row)
        relation_of = relations(conn, entry)
        for sub in subs:
            # A subscription hears of what happens from its creation; earlier events
            # reach it only when the partner asks for a replay.
            if entry.occurred_at < sub.created_at:
                continue
            body = shared_with(policy, sub, entry, relation_of)
            if body is not None:
                insert_if_absent(
                    conn, deliveries, _new_delivery(sub.subscription_id, entry, body, now)
                )
        mail.plan_for_event(conn, policy, entry, now)
        conn.execute(
            update(event_journal).where(event_journal.c.seq == row.seq).values(fanned_out=True)
        )
    return len(rows)


def replay(
    conn: Connection, policy: SharingPolicy, subscription: Any, since: datetime, now: datetime
) -> int:
    """Queue again every event since `since` the partner may receive now; returns how many.

    The policy is asked again with today's facts (consent withdrawn since is
    honoured). An event delivered before keeps its webhook-id, so a receiver
    that still has it can tell it is the same message.
    """
    rows = conn.execute(
        select(event_journal)
        .where(event_journal.c.occurred_at >= since, *_facts_known())
        .order_by(event_journal.c.occurred_at, event_journal.c.seq)
    ).all()
    queued = 0
    for row in rows:
        entry = JournalEntry.of(row)
        body = shared_with(policy, subscription, entry, relations(conn, entry))
        if body is None:
            continue
        queued += 1
        new = _new_delivery(subscription.subscription_id, entry, body, now)
        if not insert_if_absent(conn, deliveries, new):
            conn.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.subscription_id == subscription.subscription_id,
                        deliveries.c.event_id == entry.event_id,
                    )
                )
                .values(**_fresh_series(now), body=body)
            )
    return queued


def _fresh_series(now: datetime) -> dict[str, Any]:
    """A delivery's state when it starts a new series of attempts (replay, redeliver)."""
    return {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "first_attempt_at": None,
        "leased_until": None,
    }


def redeliver(conn: Connection, delivery_pk: int, now: datetime) -> None:
    conn.execute(
        update(deliveries).where(deliveries.c.id == delivery_pk).values(_fresh_series(now))
    )


def backlog(conn: Connection) -> int:
    """Deliveries not yet delivered nor dead-lettered."""
    return conn.execute(
        select(func.count()).select_from(deliveries).where(deliveries.c.status.in_(OPEN_STATUSES))
    ).scalar_one()
