"""Case plan's events of the team around the family, consent, overrides and schools
(issue 14), and of services started (issue 21), reach every consumer of its topic.
Allocation and intake follow none of them, so their consumers pass them by (counted as
ignored, never dead-lettered: see shared/tests/kafka/test_projection_consumer.py); a
projection that starts to follow one must then handle it, which this test makes a
deliberate change."""

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
    assert followed == set()
