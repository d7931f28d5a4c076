from datetime import UTC, datetime
from uuid import uuid4

import pytest

from hub.contracts.codes import ReferralSource, Urgency
from hub.contracts.intake import ReferralReceived
from intake import domain


def _command() -> domain.ReceiveReferral:
    example = ReferralReceived.example()
    return domain.ReceiveReferral(
        referral_id=uuid4(),
        family_id=uuid4(),
        received_at=datetime(2025, 3, 3, 9, 42, tzinfo=UTC),
        referral_source=ReferralSource.SCHOOL,
        referrer=example.referrer,
        partner_reference="HPS-1",
        urgency=Urgency.URGENT,
        children=example.children,
        household_members=example.household_members,
        concerns=example.concerns,
        consent=example.consent,
        safeguarding_override=None,
    )


def test_receiving_a_new_referral_records_everything_the_referrer_said():
    command = _command()

    [event] = domain.receive(None, command)

    assert isinstance(event, ReferralReceived)
    assert event.referral_id == command.referral_id
    assert event.family_id == command.family_id
    assert event.children == command.children
    assert event.urgency is Urgency.URGENT
    assert event.matched_existing_family is False


def test_a_referral_cannot_be_received_twice():
    command = _command()
    state = domain.replay(domain.receive(None, command))

    assert state is not None and state.status is domain.ReferralStatus.RECEIVED
    assert state.version == 1
    with pytest.raises(domain.ReferralRuleBroken):
        domain.receive(state, command)
