"""Between the store, the envelope on the wire and what a projection handler sees."""

from __future__ import annotations

from uuid import UUID

from hub.contracts.envelope import SOURCE_PREFIX, Envelope, UndecodableMessage, schema_uri
from hub.projections import STORE_ORIGIN, EventMeta
from hub.store import RecordedEvent

# The CloudEvents extension attribute naming the family's event this one follows.
FOLLOWS = "follows"


def source_of(service: str) -> str:
    return SOURCE_PREFIX + service


def producer_of(source: str) -> str:
    return source.removeprefix(SOURCE_PREFIX)


def envelope_of(event: RecordedEvent, service: str) -> Envelope:
    return Envelope(
        id=event.event_id,
        type=event.event_type,
        source=source_of(service),
        subject=event.subject,
        time=event.occurred_at,
        dataschema=schema_uri(event.event_type),
        partitionkey=event.family_id,
        sequence=f"{event.position:020d}",
        traceparent=event.traceparent,
        tracestate=event.tracestate,
        data=event.data_json.encode(),
        extensions={FOLLOWS: event.follows} if event.follows else {},
    )


def follows_of(envelope: Envelope) -> str | None:
    """The id of the family's event this one follows (hub.family_order), if it names one."""
    follows = envelope.extensions.get(FOLLOWS)
    if follows is None:
        return None
    try:
        return str(UUID(follows))
    except ValueError:
        raise UndecodableMessage(f"ce_{FOLLOWS} is not an event id") from None


def meta_of(envelope: Envelope, *, origin: str, position: int) -> EventMeta:
    return EventMeta(
        event_id=envelope.id,
        event_type=envelope.type,
        producer=producer_of(envelope.source),
        occurred_at=envelope.time,
        family_id=envelope.partitionkey,
        subject=envelope.subject,
        origin=origin,
        position=position,
        follows=follows_of(envelope),
    )


def meta_of_recorded(event: RecordedEvent, service: str) -> EventMeta:
    return EventMeta(
        event_id=event.event_id,
        event_type=event.event_type,
        producer=service,
        occurred_at=event.occurred_at,
        family_id=event.family_id,
        subject=event.subject,
        origin=STORE_ORIGIN,
        position=event.position,
        follows=event.follows,
    )
