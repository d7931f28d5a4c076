"""Notifications' write side: a partner's subscriptions, each command a function of a
`CommandContext`, no HTTP. A partner acts on its own subscriptions only."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import delete, insert, select, update

from hub.commands import CommandContext, CommandResult
from hub.contracts.topics import partner_topic
from hub.refusals import Conflict
from notifications import fanout, queries, signing
from notifications.encryption import SecretBox
from notifications.policy import SharingPolicy
from notifications.schemas import (
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    SubscriptionCreated,
    SubscriptionRequest,
    WebhookDelivery,
)
from notifications.settings import NotificationsSettings
from notifications.subscription_checks import check_event_types, check_url, partner_of
from notifications.tables import deliveries, delivery_attempts, subscriptions


def create_subscription(
    ctx: CommandContext,
    body: SubscriptionRequest,
    policy: SharingPolicy,
    settings: NotificationsSettings,
    box: SecretBox,
    embedded: bool,
) -> CommandResult:
    """The subscription, with its signing secret sealed (the runner keeps it so)."""
    scope = ctx.scope
    check_event_types(body.event_types, partner_of(scope), policy)
    row: dict[str, Any] = {
        "subscription_id": str(uuid4()),
        "partner_id": scope.subject,
        "partner_type": scope.organisation_type,
        "event_types": json.dumps(body.event_types),
        "status": "active",
        "description": body.description,
        "created_at": ctx.now,
        "updated_at": ctx.now,
        "url": None,
        "topic": None,
        "secret_encrypted": None,
    }
    if isinstance(body.delivery, WebhookDelivery):
        row |= {
            "channel": "webhook",
            "url": body.delivery.url,
            "endpoint": check_url(body.delivery.url, settings, embedded),
            "secret_encrypted": box.seal(signing.new_secret()),
        }
    else:
        topic = partner_topic(scope.subject)
        row |= {"channel": "partner_topic", "topic": topic, "endpoint": f"kafka://{topic}"}
    ctx.conn.execute(insert(subscriptions), row)
    stored = queries.own_subscription(ctx.conn, scope, UUID(row["subscription_id"]))
    created = SubscriptionCreated(
        **queries.subscription_view(ctx.conn, stored).model_dump(),
        secret=row["secret_encrypted"],
    )
    return CommandResult(201, created, {"Location": f"/v1/subscriptions/{row['subscription_id']}"})


def set_status(
    ctx: CommandContext, subscription_id: UUID, status: str, paused_reason: str | None
) -> CommandResult:
    """Pause (events keep queueing) or resume a subscription."""
    queries.own_subscription(ctx.conn, ctx.scope, subscription_id)
    ctx.conn.execute(
        update(subscriptions)
        .where(subscriptions.c.subscription_id == str(subscription_id))
        .values(status=status, paused_reason=paused_reason, updated_at=ctx.now)
    )
    row = queries.own_subscription(ctx.conn, ctx.scope, subscription_id)
    return CommandResult(200, queries.subscription_view(ctx.conn, row))


def delete_subscription(ctx: CommandContext, subscription_id: UUID) -> CommandResult:
    """The subscription and everything still queued for it."""
    queries.own_subscription(ctx.conn, ctx.scope, subscription_id)
    key = str(subscription_id)
    owned = select(deliveries.c.id).where(deliveries.c.subscription_id == key)
    ctx.conn.execute(delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(owned)))
    ctx.conn.execute(delete(deliveries).where(deliveries.c.subscription_id == key))
    ctx.conn.execute(delete(subscriptions).where(subscriptions.c.subscription_id == key))
    return CommandResult(204, None)


def rotate_secret(
    ctx: CommandContext, subscription_id: UUID, grace_seconds: int, box: SecretBox
) -> CommandResult:
    """A new signing secret; the old one stays valid for the grace period."""
    until = ctx.now + timedelta(seconds=grace_seconds)
    row = queries.own_subscription(ctx.conn, ctx.scope, subscription_id)
    if row.channel != "webhook":
        raise Conflict("A partner topic subscription has no signing secret.")
    sealed = box.seal(signing.new_secret())
    ctx.conn.execute(
        update(subscriptions)
        .where(subscriptions.c.subscription_id == row.subscription_id)
        .values(
            secret_encrypted=sealed,
            previous_secret_encrypted=row.secret_encrypted,
            previous_secret_until=until,
            updated_at=ctx.now,
        )
    )
    return CommandResult(200, SecretRotated(secret=sealed, previous_secret_valid_until=until))


def redeliver(ctx: CommandContext, subscription_id: UUID, delivery_id: str) -> CommandResult:
    """Send one delivery again, with a fresh retry schedule."""
    row = queries.own_delivery(ctx.conn, ctx.scope, subscription_id, delivery_id)
    fanout.redeliver(ctx.conn, row.id, ctx.now)
    again = queries.own_delivery(ctx.conn, ctx.scope, subscription_id, delivery_id)
    return CommandResult(202, queries.delivery_view(again))


def replay(
    ctx: CommandContext, subscription_id: UUID, body: ReplayRequest, policy: SharingPolicy
) -> CommandResult:
    """Queue again every event since a point in time, under today's policy."""
    row = queries.own_subscription(ctx.conn, ctx.scope, subscription_id)
    queued = fanout.replay(ctx.conn, policy, row, body.since, ctx.now)
    return CommandResult(202, ReplayQueued(queued=queued))
