"""Case plan's events of the team around the family, consent, overrides and schools
(issue 14), and of services started (issue 21), reach every consumer of its topic.
Allocation follows none of them, and intake only the schools recorded for children
(where an Operation Encompass notice goes, issue 22), so their consumers pass the others
by (counted as ignored, never dead-lettered: see
shared/tests/kafka/test_projection_consumer.py); a projection that starts to follow one
must then handle it, which this test makes a deliberate change."""

import pytest

from hub.cli import load_definition
from hub.contracts.caseplan import (
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    ServiceStarted,
    TeamMemberAdded,
    TeamMemberRemoved,
)
from hub.contracts.intake import ConsultationAdvised, ConsultationReferred, ConsultationRequested
from hub.contracts.topics import service_topic

SHARING_EVENTS = [
    model.event_type
    for model in (
        TeamMemberAdded,
        TeamMemberRemoved,
        ConsentRecorded,
        ConsentNarrowed,
        ConsentWithdrawn,
        SafeguardingOverrideRecorded,
        SafeguardingOverrideEnded,
        ChildSchoolRecorded,
        ServiceStarted,
    )
]
FOLLOWED = {
    "allocation": set(),
    "intake": {("encompass", ChildSchoolRecorded.event_type)},
}


@pytest.mark.parametrize("service", ["allocation", "intake"])
def test_consumers_of_the_caseplan_topic_pass_the_sharing_events_by(service):
    definition = load_definition(service)
    assert service_topic("caseplan") in definition.consumes
    followed = {
        (projection.name, event_type)
        for projection in definition.projections
        for event_type in SHARING_EVENTS
        if projection.handles(event_type)
    }
    assert followed == FOLLOWED[service]


CONSULTATION_EVENTS = [
    model.event_type for model in (ConsultationRequested, ConsultationAdvised, ConsultationReferred)
]


@pytest.mark.parametrize(
    ("service", "follows"), [("notifications", False), ("allocation", False), ("caseplan", True)]
)
def test_only_case_plan_follows_the_front_doors_consultations(service, follows):
    """Issue 21: case plan counts consultations for the report; no partner is notified of
    one, so notifications does not even journal them (their family is the consultation's
    own, which fan-out would wait for for ever)."""
    definition = load_definition(service)
    followed = {
        event_type
        for projection in definition.projections
        for event_type in CONSULTATION_EVENTS
        if projection.handles(event_type)
    }
    assert followed == (set(CONSULTATION_EVENTS) if follows else set())
