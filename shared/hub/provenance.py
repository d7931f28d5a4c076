"""Consumers trust the topic, not the record.

Anyone who can produce to a topic can write any CloudEvents `source` and `type`
into the headers. What the hub can rely on is who may write each topic (the
contracts say which service owns it, and the broker's ACLs enforce it), so a
record is only believed when its `source` and its event type's declared producer
both name that owner. Anything else is dead-lettered, never applied.
"""

from __future__ import annotations

from hub.contracts.envelope import Envelope
from hub.contracts.registry import UnknownEventType, event_model
from hub.contracts.topics import topic_owner
from hub.envelopes import source_of

_SHOWN = 80  # of a forged attribute: enough to recognise it, not a place to smuggle text


def provenance_problem(topic: str, envelope: Envelope) -> str | None:
    """Why the record on `topic` cannot be believed, or None when it can.

    On a service's topic, the event type must be one that service publishes and
    `source` must be that service's. On a topic no service owns (tests, private
    streams), `source` must still be the event type's producer. An event type the
    contracts do not know is judged by its source alone: no projection can apply it.
    """
    owner = topic_owner(topic)
    try:
        producer = event_model(envelope.type).producer
    except UnknownEventType:
        producer = None
    if owner is not None and producer is not None and producer != owner:
        return (
            f"{envelope.type} is published only by {producer}, but arrived on {topic}, "
            f"which only {owner} writes"
        )
    publisher = owner or producer
    if publisher is not None and envelope.source != source_of(publisher):
        return (
            f"source {envelope.source[:_SHOWN]!r} is not {source_of(publisher)!r}, "
            f"the only service that publishes {envelope.type[:_SHOWN]} on {topic}"
        )
    return None
