"""Kafka topic names. Every topic is keyed by family id so a family's events stay in order."""

from hub.contracts.base import PRODUCERS
from hub.contracts.identifiers import SLUG_PATTERN
from hub.contracts.registry import event_model

DLQ_SUFFIX = ".dlq"


def service_topic(service: str) -> str:
    """The topic only `service` writes, e.g. "earlyhelp.intake.v1"."""
    if service not in PRODUCERS:
        raise ValueError(f"{service!r} publishes no topic; producers are {', '.join(PRODUCERS)}")
    return f"earlyhelp.{service}.v1"


def dlq_topic(topic: str) -> str:
    """Where a consumer of `topic` parks messages it could not handle."""
    if topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{topic!r} is already a dead-letter topic")
    return topic + DLQ_SUFFIX


def partner_topic(partner_id: str) -> str:
    """The topic carrying what one partner is allowed to see."""
    if not SLUG_PATTERN.fullmatch(partner_id):
        raise ValueError(f"partner id {partner_id!r} must be lower-case letters, digits and '-'")
    return f"earlyhelp.partner.{partner_id}.v1"


SERVICE_TOPICS: dict[str, str] = {service: service_topic(service) for service in PRODUCERS}


def topic_owner(topic: str) -> str | None:
    """The only service that writes `topic`, or None for a topic no service owns."""
    return next((service for service, owned in SERVICE_TOPICS.items() if owned == topic), None)


def topic_for_event(event_type: str) -> str:
    """The service topic an event type is published on; raises UnknownEventType."""
    return SERVICE_TOPICS[event_model(event_type).producer]


def hub_topics() -> list[str]:
    """Every topic the hub needs before anything produces: the service topics and their DLQs."""
    topics = list(SERVICE_TOPICS.values())
    return topics + [dlq_topic(topic) for topic in topics]
