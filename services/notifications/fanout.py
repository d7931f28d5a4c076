"""From journalled events to deliveries: who may receive each event, and what of it.

Fan-out reads the journal in the order events were consumed and, for each
subscription that wants the event type and exists since the event happened,
asks the policy what that partner may see given what the hub knows of the
referral and case (`relation`: referrer, school of a child on the case, member of
the case's team under its consent or a live override, the school an Operation
Encompass notice names). An allowed event becomes
one delivery row per subscription, holding the minimised CloudEvent; the row's
key (subscription, event) makes fan-out, replays and projection rebuilds
idempotent, and gives the delivery its stable webhook-id. The policy is asked
again at every send (`allowed`, from the delivery worker's claim).

Kafka keeps a family's events in order within one service's topic only, so the
consumer may read allocation's CaseAllocated before intake's triage that opened
the case. Fan-out therefore restores the order across topics: an event waits in
the journal until its family is known (its referral or step-down consumed) and,
for an event about a case, until the case's opening is known, so the policy is
never asked without its facts; and until the event it follows has been consumed.
Every event names the family's event it follows as its producer knew the family
(`hub.family_order`), so an event waits only when its predecessor is known to be
missing, and then at most `ordering_max_wait_ms` (a predecessor dead-lettered
must not hold its family for ever). Events go out in the order they happened: a
family's events are fanned out strictly in that order, so one waiting holds back
the family's later ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, or_, select, update

from hub.contracts.codes import ConsentScope, PartnerOrganisationType
from hub.contracts.intake import EncompassNoticeIssued, IntakeEvent
from hub.contracts.registry import EVENT_TYPES
from hub.sql import insert_all_if_absent, insert_if_absent
from hub.tables import inbox
from notifications import mail
from notifications.policy import Partner, Relation, Shared, SharingPolicy, share
from notifications.tables import (
    JOURNAL_PROJECTION,
    case_consents,
    case_overrides,
    case_schools,
    deliveries,
    delivery_attempts,
    event_journal,
    family_facts,
    known_cases,
    referral_facts,
    subscriptions,
    team_members,
)

SOURCE = "/earlyhelp/notifications"
_MESSAGE_NAMESPACE = uuid.UUID("4c6f0a52-8d0e-4f7b-9a54-2f2b7c1d9e10")
_FAMILY_NAMESPACE = uuid.UUID("b7d1e3c4-5a6f-4e21-9c8d-0f1a2b3c4d5e")
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


# Built once, given their values at execution: every claim asks these for each delivery,
# and building a statement costs more than running it.
_OWN_REFERRAL = (
    select(referral_facts.c.partner_reference)
    .where(
        referral_facts.c.referrer_id == bindparam("partner_id"),
        referral_facts.c.referral_id == bindparam("referral_id"),
    )
    .limit(1)
)
_OWN_REFERRAL_OF_CASE = (
    select(referral_facts.c.partner_reference)
    .where(
        referral_facts.c.referrer_id == bindparam("partner_id"),
        referral_facts.c.case_id == bindparam("case_id"),
    )
    .order_by(referral_facts.c.referral_id)
    .limit(1)
)
_SCHOOL_OF_CASE = select(
    or_(
        exists().where(
            case_schools.c.case_id == bindparam("case_id"),
            case_schools.c.school_id == bindparam("partner_id"),
        ),
        exists().where(
            referral_facts.c.case_id == bindparam("case_id"),
            referral_facts.c.referrer_id == bindparam("partner_id"),
        ),
    )
)
_MEMBER = (
    team_members.c.case_id == bindparam("case_id"),
    team_members.c.member_id == bindparam("partner_id"),
)
_MEMBER_NOW = select(exists().where(*_MEMBER, team_members.c.removed_at.is_(None)))
_MEMBER_THEN = select(
    exists().where(
        *_MEMBER,
        team_members.c.added_at <= bindparam("occurred_at"),
        or_(
            team_members.c.removed_at.is_(None),
            team_members.c.removed_at > bindparam("occurred_at"),
        ),
    )
)
_CASE_CONSENT = select(case_consents.c.purposes, case_consents.c.set_at).where(
    case_consents.c.case_id == bindparam("case_id")
)
_CASE_OVERRIDE = select(
    case_overrides.c.state, case_overrides.c.review_date, case_overrides.c.set_at
).where(case_overrides.c.case_id == bindparam("case_id"))


def _referral_of_case_with(flag: Any, since_decision: bool) -> Any:
    """Whether a referral of the case carries `flag`, among those triaged after the case's
    own decision at :set_at when `since_decision` (theirs stand until it decides)."""
    where = [referral_facts.c.case_id == bindparam("case_id"), flag]
    if since_decision:
        where.append(referral_facts.c.triaged_at > bindparam("set_at"))
    return select(exists().where(*where))


_REFERRAL_CONSENTED = {
    since: _referral_of_case_with(referral_facts.c.consent_to_share, since)
    for since in (False, True)
}
_REFERRAL_OVERRIDDEN = {
    since: _referral_of_case_with(referral_facts.c.safeguarding_override, since)
    for since in (False, True)
}


def relation(conn: Connection, partner_id: str, entry: JournalEntry, today: date) -> Relation:
    """What the hub knows, now, of `partner_id`'s relation to the event's referral and case.

    Every send asks again (see `notifications.delivering.claiming`), so a member removed
    or consent withdrawn since the event withholds what is still queued.
    """
    if entry.event_type == EncompassNoticeIssued.event_type:
        # An Operation Encompass notice goes to the one school it names, under the
        # statutory duty to tell the child's school: nothing else relates anyone to it.
        notified = entry.data.get("school_id") == partner_id
        return Relation(notified_school=notified, basis="statutory_duty" if notified else None)
    referral_id, case_id = entry.data.get("referral_id"), entry.data.get("case_id")
    referred = None
    if referral_id is not None:
        referred = conn.execute(
            _OWN_REFERRAL, {"partner_id": partner_id, "referral_id": referral_id}
        ).first()
    elif case_id is not None:
        referred = conn.execute(
            _OWN_REFERRAL_OF_CASE, {"partner_id": partner_id, "case_id": case_id}
        ).first()
    if case_id is None:
        return Relation(
            referrer=referred is not None,
            partner_reference=referred.partner_reference if referred is not None else None,
        )
    school = bool(
        conn.execute(_SCHOOL_OF_CASE, {"partner_id": partner_id, "case_id": case_id}).scalar()
    )
    basis = _member_basis(conn, partner_id, case_id, entry.occurred_at, today)
    return Relation(
        referrer=referred is not None,
        school_of_child=school,
        team_member_with_consent=basis is not None,
        partner_reference=referred.partner_reference if referred is not None else None,
        basis=basis,
    )


def _member_basis(
    conn: Connection, partner_id: str, case_id: str, occurred_at: datetime, today: date
) -> str | None:
    """`consent` or `override` when the partner is on the case's team now, was on it when
    the event happened, and the case's consent or a live override lets restricted detail
    go; None otherwise."""
    member = {"case_id": case_id, "partner_id": partner_id}
    if not conn.execute(_MEMBER_NOW, member).scalar():
        return None
    if not conn.execute(_MEMBER_THEN, member | {"occurred_at": occurred_at}).scalar():
        return None
    if _consented(conn, case_id):
        return "consent"
    if _overridden(conn, case_id, today):
        return "override"
    return None


def _consented(conn: Connection, case_id: str) -> bool:
    recorded = conn.execute(_CASE_CONSENT, {"case_id": case_id}).first()
    if recorded is not None and str(ConsentScope.SHARE_WITH_PARTNERS) in json.loads(
        recorded.purposes
    ):
        return True
    return _referral_says(conn, _REFERRAL_CONSENTED, case_id, recorded)


def _overridden(conn: Connection, case_id: str, today: date) -> bool:
    decided = conn.execute(_CASE_OVERRIDE, {"case_id": case_id}).first()
    # Recorded, not ended, and its review date not passed: it lapses after that day.
    if decided is not None and decided.state == "recorded" and decided.review_date >= today:
        return True
    return _referral_says(conn, _REFERRAL_OVERRIDDEN, case_id, decided)


def _referral_says(conn: Connection, statements: dict, case_id: str, decision: Any) -> bool:
    """A referral of the case says so, and the case has not decided since it was triaged."""
    set_at = decision.set_at if decision is not None else None
    values = {"case_id": case_id} | ({"set_at": set_at} if set_at is not None else {})
    return bool(conn.execute(statements[set_at is not None], values).scalar())


def pseudonym(partner_id: str, family_id: str) -> str:
    """The family as one partner knows it (the CloudEvent's `partitionkey`, the partner
    topic's key): stable, so the partner can keep a family's events together, but not the
    hub's family id, and different for each partner, so partners cannot match families."""
    return str(uuid.uuid5(_FAMILY_NAMESPACE, f"{partner_id}/{family_id}"))


def cloud_event(
    entry: JournalEntry, shared: Shared, regulation: str, partner_id: str
) -> dict[str, Any]:
    """The event as a partner receives it: CloudEvents 1.0 structured JSON, labelled."""
    return {
        "specversion": "1.0",
        "id": entry.event_id,
        "source": SOURCE,
        "type": entry.event_type,
        "time": entry.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "subject": entry.subject,
        "partitionkey": pseudonym(partner_id, entry.family_id),
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


def relations(conn: Connection, entry: JournalEntry, today: date) -> Callable[[str], Relation]:
    """Each partner's relation to the event's referral and case, looked up once per partner."""
    return cache(lambda partner_id: relation(conn, partner_id, entry, today))


@dataclass(frozen=True)
class Allowed:
    """What one subscription may be sent of one event now, and why."""

    body: str
    shared: Shared
    relation: Relation

    def disclosure(self) -> dict[str, Any] | None:
        """What the disclosure record keeps of a send of this, if it holds restricted detail."""
        if not self.shared.restricted_paths:
            return None
        return {
            "fields": json.dumps(self.shared.restricted_paths),
            "rules": ",".join(self.shared.restricted_rules)[:500],
            # A restricted rule on another condition (a partner's own agreement) has no
            # consent or override behind it: the record says so.
            "basis": self.relation.basis or "agreement",
        }


def allowed(
    policy: SharingPolicy,
    subscription: Any,
    entry: JournalEntry,
    relation_of: Callable[[str], Relation],
) -> Allowed | None:
    """What `subscription`'s partner may have of the event, or None when nothing."""
    if not wants(json.loads(subscription.event_types), entry.event_type):
        return None
    partner = partner_of(subscription)
    if not policy.may_ever_receive(partner, entry.event_type):
        return None
    relation_now = relation_of(partner.partner_id)
    shared = share(policy, partner, entry.event_type, entry.data, relation_now)
    if shared is None:
        return None
    body = json.dumps(
        cloud_event(entry, shared, policy.regulation, partner.partner_id), separators=(",", ":")
    )
    return Allowed(body, shared, relation_now)


def shared_with(
    policy: SharingPolicy,
    subscription: Any,
    entry: JournalEntry,
    relation_of: Callable[[str], Relation],
) -> str | None:
    """The delivery body for `subscription`, or None when its partner may not have the event."""
    found = allowed(policy, subscription, entry, relation_of)
    return found.body if found is not None else None


def journal_entry(conn: Connection, event_id: str) -> JournalEntry | None:
    row = conn.execute(select(event_journal).where(event_journal.c.event_id == event_id)).first()
    return JournalEntry.of(row) if row is not None else None


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


def _predecessor_consumed_or_waited_for(waited_since: Any) -> object:
    """The event names no predecessor, or its predecessor has been consumed, or it has
    waited for it since `waited_since` (it was journalled before then)."""
    return or_(
        event_journal.c.follows.is_(None),
        event_journal.c.follows.in_(
            select(inbox.c.event_id).where(inbox.c.projection == JOURNAL_PROJECTION)
        ),
        event_journal.c.journalled_at <= waited_since,
    )


def _ready(waited_since: Any) -> tuple:
    """Journalled events that may be fanned out now: facts known, predecessor consumed or
    waited for long enough, nothing earlier of the family still waiting."""
    return (
        event_journal.c.fanned_out.is_(False),
        _predecessor_consumed_or_waited_for(waited_since),
        *_facts_known(),
        _first_of_family_waiting(),
    )


_FAN_OUT_DUE = select(event_journal.c.seq).where(*_ready(bindparam("waited_since"))).limit(1)


def fan_out_due(conn: Connection, now: datetime, max_wait: timedelta) -> bool:
    """Whether some journalled event is ready for fan-out (a read, no writer's lock)."""
    return conn.execute(_FAN_OUT_DUE, {"waited_since": now - max_wait}).first() is not None


def fan_out(
    conn: Connection,
    policy: SharingPolicy,
    now: datetime,
    max_wait: timedelta,
    limit: int,
    retention: timedelta | None = None,
    encompass: mail.EncompassMail | None = None,
) -> int:
    """Turn journalled events whose facts and predecessor are known into deliveries and
    e-mails; returns how many."""
    rows = conn.execute(
        select(event_journal)
        .where(*_ready(now - max_wait))
        .order_by(event_journal.c.occurred_at, event_journal.c.seq)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    subs = conn.execute(select(subscriptions)).all()
    for row in rows:
        entry = JournalEntry.of(row)
        relation_of = relations(conn, entry, now.date())
        # An event older than the retention period (journalled again by a rebuild) goes
        # to no one: its deliveries, if any, were purged with it.
        stale = retention is not None and entry.occurred_at < now - retention
        new = []
        for sub in subs:
            # A subscription hears of what happens from its creation; earlier events
            # reach it only when the partner asks for a replay.
            if stale or entry.occurred_at < sub.created_at:
                continue
            body = shared_with(policy, sub, entry, relation_of)
            if body is not None:
                new.append(_new_delivery(sub.subscription_id, entry, body, now))
        # Inserted in the event's order, one statement for all its subscriptions.
        insert_all_if_absent(conn, deliveries, new)
        if not stale:
            mail.plan_for_event(conn, policy, entry, now, encompass)
    conn.execute(_FANNED_OUT, [{"fanned_seq": row.seq} for row in rows])
    return len(rows)


_FANNED_OUT = (
    update(event_journal)
    .where(event_journal.c.seq == bindparam("fanned_seq"))
    .values(fanned_out=True)
)


def replay(
    conn: Connection, policy: SharingPolicy, subscription: Any, since: datetime, now: datetime
) -> int:
    """Queue again every event since `since` the partner may receive now; returns how many.

    Never from before the subscription existed. The policy is asked again with
    today's facts: restricted detail only of what happened while the partner was on
    the case's team, and only while it still is and the case's consent (or a live
    override) stands; each send asks once more. An event delivered before keeps its
    webhook-id, so a receiver that still has it can tell it is the same message.
    """
    since = max(since, subscription.created_at)
    rows = conn.execute(
        select(event_journal)
        .where(event_journal.c.occurred_at >= since, *_facts_known())
        .order_by(event_journal.c.occurred_at, event_journal.c.seq)
    ).all()
    queued = 0
    for row in rows:
        entry = JournalEntry.of(row)
        body = shared_with(policy, subscription, entry, relations(conn, entry, now.date()))
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


def purge(conn: Connection, before: datetime) -> None:
    """Delete what is older than the retention period: journalled events already fanned
    out, settled deliveries (their bodies) and their attempts. The disclosure record
    stays; deliveries still pending or retrying stay until they settle."""
    old = select(deliveries.c.id).where(
        deliveries.c.created_at < before, deliveries.c.status.not_in(OPEN_STATUSES)
    )
    conn.execute(delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(old)))
    conn.execute(
        delete(deliveries).where(
            deliveries.c.created_at < before, deliveries.c.status.not_in(OPEN_STATUSES)
        )
    )
    conn.execute(
        delete(event_journal).where(
            event_journal.c.occurred_at < before, event_journal.c.fanned_out.is_(True)
        )
    )
