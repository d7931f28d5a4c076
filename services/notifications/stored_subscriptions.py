"""Subscriptions stored before the API read their fields as its schema says.

Until then an event-type pattern was trimmed of surrounding spaces before it was
checked and stored, and a webhook URL with a space (in its host, say) was accepted
and stored as sent, although no delivery to it can succeed. The API now refuses
both; the rows already stored are not changed behind the partner's back (only they
know the URL they meant), but listed at start-up so that the operator can ask the
partner to move them (docs/subscribing.md says how).
"""

from __future__ import annotations

import json
import logging

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, select

from notifications.schemas import EventTypePattern, WebhookDelivery
from notifications.tables import subscriptions

_log = logging.getLogger("notifications.subscriptions")

_EVENT_TYPES = TypeAdapter(list[EventTypePattern])


def _refused_fields(event_types: str, channel: str, url: str | None) -> list[str]:
    refused = []
    try:
        _EVENT_TYPES.validate_python(json.loads(event_types))
    except (ValidationError, ValueError):
        refused.append("event_types")
    if channel == "webhook":
        try:
            WebhookDelivery(type="webhook", url=url or "")
        except ValidationError:
            refused.append("delivery.url")
    return refused


def warn_of_subscriptions_the_api_would_refuse(conn: Connection) -> list[str]:
    """Log a warning for each stored subscription with a field the API now refuses;
    returns their ids. The warning names the subscription, its partner and the
    fields, never a field's value."""
    rows = conn.execute(
        select(
            subscriptions.c.subscription_id,
            subscriptions.c.partner_id,
            subscriptions.c.event_types,
            subscriptions.c.channel,
            subscriptions.c.url,
        ).order_by(subscriptions.c.created_at, subscriptions.c.subscription_id)
    ).all()
    found = []
    for row in rows:
        refused = _refused_fields(row.event_types, row.channel, row.url)
        if refused:
            found.append(row.subscription_id)
            _log.warning(
                "subscription %s of partner %s has %s that the API now refuses; the partner "
                "should move it to a new subscription (docs/subscribing.md, 'Moving a "
                "subscription')",
                row.subscription_id,
                row.partner_id,
                " and ".join(refused),
            )
    return found
