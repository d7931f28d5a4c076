import pytest

from hub.contracts.registry import EVENT_TYPES, UnknownEventType
from hub.contracts.topics import (
    SERVICE_TOPICS,
    dlq_topic,
    partner_topic,
    service_topic,
    topic_for_event,
)


def test_service_topics():
    assert service_topic("intake") == "earlyhelp.intake.v1"
    assert SERVICE_TOPICS == {
        "intake": "earlyhelp.intake.v1",
        "allocation": "earlyhelp.allocation.v1",
        "caseplan": "earlyhelp.caseplan.v1",
    }
    with pytest.raises(ValueError, match="publishes no topic"):
        service_topic("notifications")


def test_dead_letter_topics():
    assert dlq_topic("earlyhelp.intake.v1") == "earlyhelp.intake.v1.dlq"
    with pytest.raises(ValueError, match="already a dead-letter topic"):
        dlq_topic("earlyhelp.intake.v1.dlq")


def test_partner_topics():
    assert (
        partner_topic("harlesden-primary-school") == "earlyhelp.partner.harlesden-primary-school.v1"
    )
    for bad in ["", "Harlesden", "a.b", "a_b", "a b", "x/y"]:
        with pytest.raises(ValueError, match="partner id"):
            partner_topic(bad)


def test_every_event_type_goes_to_its_producers_topic():
    for event_type, model in EVENT_TYPES.items():
        assert topic_for_event(event_type) == SERVICE_TOPICS[model.producer]
    assert topic_for_event("earlyhelp.panel.decision_recorded.v1") == "earlyhelp.allocation.v1"
    with pytest.raises(UnknownEventType):
        topic_for_event("earlyhelp.unknown.thing.v1")


def test_hub_topics_are_the_service_topics_and_their_dead_letter_queues():
    from hub.contracts.topics import hub_topics

    assert sorted(hub_topics()) == sorted(
        [
            "earlyhelp.intake.v1",
            "earlyhelp.allocation.v1",
            "earlyhelp.caseplan.v1",
            "earlyhelp.intake.v1.dlq",
            "earlyhelp.allocation.v1.dlq",
            "earlyhelp.caseplan.v1.dlq",
        ]
    )
