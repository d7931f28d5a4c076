"""Notifications' read side: a partner's own subscriptions and deliveries, and no other's.

Another partner's subscription or delivery is not found, as a missing one.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, func, select

from hub import subject_access
from hub.queries import QueryContext
from hub.refusals import NotFound
from hub.scope import Scope
from notifications import fanout
from notifications.schemas import (
    AttemptView,
    DeliveryDetail,
    DeliveryList,
    DeliveryTarget,
    DeliveryView,
    Disclosure,
    FamilyDisclosures,
    Subscription,
    SubscriptionList,
)
from notifications.tables import (
    case_consents,
    case_overrides,
    case_schools,
    deliveries,
    delivery_attempts,
    disclosures,
    event_journal,
    referral_facts,
    subscriptions,
    team_members,
)


def own_subscription(conn: Connection, scope: Scope, subscription_id: UUID) -> Any:
    row = conn.execute(
        select(subscriptions).where(
            subscriptions.c.subscription_id == str(subscription_id),
            subscriptions.c.partner_id == scope.subject,
        )
    ).first()
    if row is None:
        raise NotFound(
            f"No subscription {subscription_id} of yours.",
            resource=("subscription", str(subscription_id)),
        )
    return row


def own_delivery(conn: Connection, scope: Scope, subscription_id: UUID, delivery_id: str) -> Any:
    own_subscription(conn, scope, subscription_id)
    row = conn.execute(
        select(deliveries).where(
            deliveries.c.subscription_id == str(subscription_id),
            deliveries.c.message_id == delivery_id,
        )
    ).first()
    if row is None:
        raise NotFound(
            f"No delivery {delivery_id} in this subscription.", resource=("delivery", delivery_id)
        )
    return row


def subscription_view(conn: Connection, row: Any) -> Subscription:
    waiting = conn.execute(
        select(func.count())
        .select_from(deliveries)
        .where(
            deliveries.c.subscription_id == row.subscription_id,
            deliveries.c.status.in_(fanout.OPEN_STATUSES),
        )
    ).scalar_one()
    return Subscription(
        subscription_id=row.subscription_id,
        partner_id=row.partner_id,
        event_types=json.loads(row.event_types),
        delivery=DeliveryTarget(type=row.channel, url=row.url, topic=row.topic),
        status=row.status,
        paused_reason=row.paused_reason,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        backlog=waiting,
    )


def subscription_list(ctx: QueryContext) -> SubscriptionList:
    rows = ctx.conn.execute(
        select(subscriptions)
        .where(subscriptions.c.partner_id == ctx.scope.subject)
        .order_by(subscriptions.c.created_at)
    ).all()
    return SubscriptionList(items=[subscription_view(ctx.conn, row) for row in rows])


def subscription(ctx: QueryContext, subscription_id: UUID) -> Subscription:
    return subscription_view(ctx.conn, own_subscription(ctx.conn, ctx.scope, subscription_id))


def delivery_view(row: Any, cls=DeliveryView, **extra) -> Any:
    return cls(
        delivery_id=row.message_id,
        event_id=row.event_id,
        event_type=row.event_type,
        occurred_at=row.occurred_at,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status in fanout.OPEN_STATUSES else None,
        first_attempt_at=row.first_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        **extra,
    )


def delivery_list(
    ctx: QueryContext,
    subscription_id: UUID,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryList:
    own_subscription(ctx.conn, ctx.scope, subscription_id)
    statement = select(deliveries).where(deliveries.c.subscription_id == str(subscription_id))
    if status is not None:
        statement = statement.where(deliveries.c.status == status)
    if cursor is not None:
        statement = statement.where(deliveries.c.id < int(cursor))
    rows = ctx.conn.execute(statement.order_by(deliveries.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryList(
        items=[delivery_view(row) for row in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )


def delivery(ctx: QueryContext, subscription_id: UUID, delivery_id: str) -> DeliveryDetail:
    """The event as sent (what the partner may know of a family: its reading is logged)."""
    row = own_delivery(ctx.conn, ctx.scope, subscription_id, delivery_id)
    attempts = ctx.conn.execute(
        select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id == row.id)
        .order_by(delivery_attempts.c.id)
    ).all()
    ctx.saw("delivery", delivery_id)
    return delivery_view(
        row,
        DeliveryDetail,
        event=json.loads(row.body),
        attempt_log=[
            AttemptView(
                attempted_at=a.attempted_at,
                outcome=a.outcome,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in attempts
        ],
    )


def family_disclosures(ctx: QueryContext, family_id: UUID) -> FamilyDisclosures:
    """Every send of restricted detail about one family, for its data protection officer.

    Only staff with `disclosures:read` reach it (the route says so); the read is audited.
    """
    rows = ctx.conn.execute(
        select(disclosures)
        .where(disclosures.c.family_id == str(family_id))
        .order_by(disclosures.c.disclosed_at, disclosures.c.id)
    ).all()
    ctx.saw("family", str(family_id))
    return FamilyDisclosures(
        family_id=str(family_id),
        cases=sorted({row.case_id for row in rows if row.case_id}),
        items=[
            Disclosure(
                disclosed_at=row.disclosed_at,
                partner_id=row.partner_id,
                channel=row.channel,
                case_id=row.case_id,
                event_id=row.event_id,
                event_type=row.event_type,
                delivery_id=row.message_id,
                fields=json.loads(row.fields),
                rules=[rule for rule in row.rules.split(",") if rule],
                basis=row.basis,
            )
            for row in rows
        ],
    )


# --- subject access -----------------------------------------------------------------


def family_records(ctx: QueryContext, family_id: UUID) -> subject_access.FamilyRecords:
    """What notifications holds about the family: what it disclosed to partners (each
    delivery, the event as the partner received it, and its attempts), the sharing facts
    it decides by, and which events about the family it received."""
    subject_access.check_allowed(ctx.scope)
    family = str(family_id)
    of_family = select(deliveries.c.id).where(deliveries.c.family_id == family)
    disclosed = (
        select(
            deliveries.c.message_id,
            subscriptions.c.partner_id,
            subscriptions.c.partner_type,
            subscriptions.c.channel,
            deliveries.c.subscription_id,
            deliveries.c.event_type,
            deliveries.c.occurred_at,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.delivered_at,
            deliveries.c.created_at,
            deliveries.c.body,
        )
        .join(subscriptions, subscriptions.c.subscription_id == deliveries.c.subscription_id)
        .where(deliveries.c.family_id == family)
        .order_by(deliveries.c.occurred_at, deliveries.c.id)
    )

    def section(name: str, title: str, query: Any, description: str = "") -> Any:
        return subject_access.section(ctx.conn, name, title, query, description)

    sections = [
        section(
            "deliveries",
            "Deliveries to partners",
            disclosed,
            "Each event about the family sent to a partner (`partner_id`) by webhook or its "
            "Kafka topic; `body` is exactly what the partner received.",
        ),
        section(
            "delivery_attempts",
            "Attempts at each webhook delivery",
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_(of_family))
            .order_by(delivery_attempts.c.attempted_at, delivery_attempts.c.id),
        ),
        section(
            "disclosure_record",
            "Restricted detail disclosed to partners",
            select(disclosures)
            .where(disclosures.c.family_id == family)
            .order_by(disclosures.c.disclosed_at, disclosures.c.id),
            "Each send of restricted case detail: the fields, to whom, under which rule, "
            "and on what basis (the case's consent or a safeguarding override).",
        ),
        section(
            "referral_facts",
            "What each referral allows to be shared",
            select(referral_facts)
            .where(referral_facts.c.family_id == family)
            .order_by(referral_facts.c.referral_id),
        ),
        section(
            "team_members",
            "The team around the family of each case",
            select(team_members)
            .where(team_members.c.family_id == family)
            .order_by(team_members.c.case_id, team_members.c.added_at),
        ),
        section(
            "case_consents",
            "The consent each case stands on",
            select(case_consents)
            .where(case_consents.c.family_id == family)
            .order_by(case_consents.c.case_id),
        ),
        section(
            "case_overrides",
            "Safeguarding overrides of each case",
            select(case_overrides)
            .where(case_overrides.c.family_id == family)
            .order_by(case_overrides.c.case_id),
        ),
        section(
            "case_schools",
            "Schools recorded for the children of each case",
            select(case_schools)
            .where(case_schools.c.family_id == family)
            .order_by(case_schools.c.case_id, case_schools.c.school_id),
        ),
        section(
            "events_received",
            "Events about the family received from the other services",
            select(
                event_journal.c.event_id,
                event_journal.c.event_type,
                event_journal.c.subject,
                event_journal.c.occurred_at,
                event_journal.c.journalled_at,
            )
            .where(event_journal.c.family_id == family)
            .order_by(event_journal.c.seq),
            "Copies of the events the other services report in their own answers; listed "
            "here, not repeated.",
        ),
    ]
    ctx.saw(subject_access.RESOURCE_TYPE, family_id)
    return subject_access.records(
        ctx.conn,
        "notifications",
        family_id,
        sections,
        id_columns=("referral_id", "message_id", "subject"),
    )
