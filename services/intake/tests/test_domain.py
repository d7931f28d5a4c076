from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from hub.contracts.codes import LevelOfNeed, ReferralSource, TriageRoute, Urgency
from hub.contracts.intake import ReferralReceived, ReferralTriaged, ReferralWithdrawn
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


# --- triage and withdrawal -------------------------------------------------------------

DECIDED_AT = datetime(2025, 3, 4, 14, 10, tzinfo=UTC)
SCHOOL = "harlesden-primary-school"


def _received() -> domain.Referral:
    state = domain.replay(domain.receive(None, _command()))
    assert state is not None
    return state


def _triage(state: domain.Referral, **changes) -> domain.TriageReferral:
    command = domain.TriageReferral(
        referral_id=state.referral_id,
        level_of_need=LevelOfNeed.EARLY_HELP,
        route=TriageRoute.EARLY_HELP,
        locality="brent-harlesden",
        rationale="Needs across education and parental mental health; consent to assessment.",
        decided_by="front-door-demo",
        decided_at=DECIDED_AT,
        new_case_id=uuid4(),
    )
    return replace(command, **changes)


def _withdrawal(state: domain.Referral, **changes) -> domain.WithdrawReferral:
    command = domain.WithdrawReferral(
        referral_id=state.referral_id,
        organisation_id=SCHOOL,
        withdrawn_by=SCHOOL,
        reason="Sent in error: the health visitor referred the family last week.",
        withdrawn_at=DECIDED_AT,
    )
    return replace(command, **changes)


def test_a_received_referral_remembers_who_referred_it():
    state = _received()
    assert state.referrer_organisation_id == SCHOOL
    assert state.status is domain.ReferralStatus.RECEIVED


def test_triage_to_early_help_opens_a_case_in_the_locality():
    state = _received()
    command = _triage(state)

    [event] = domain.triage(state, command)

    assert isinstance(event, ReferralTriaged)
    assert event.referral_id == state.referral_id
    assert event.family_id == state.family_id
    assert event.case_id == command.new_case_id
    assert event.locality == "brent-harlesden"
    assert event.level_of_need is LevelOfNeed.EARLY_HELP
    assert event.decided_by == "front-door-demo"
    assert event.decided_at == DECIDED_AT
    assert event.joins_open_case is False
    after = domain.apply(state, event)
    assert after.status is domain.ReferralStatus.TRIAGED
    assert after.case_id == command.new_case_id
    assert after.version == 2


@pytest.mark.parametrize(
    ("route", "level"),
    [
        (TriageRoute.SIGNPOST_UNIVERSAL, LevelOfNeed.UNIVERSAL),
        (TriageRoute.SOCIAL_CARE, LevelOfNeed.SPECIALIST),
        (TriageRoute.NO_FURTHER_ACTION, LevelOfNeed.UNIVERSAL),
    ],
)
def test_only_the_early_help_route_opens_a_case(route, level):
    state = _received()

    [event] = domain.triage(state, _triage(state, route=route, level_of_need=level, locality=None))

    assert event.case_id is None
    assert event.locality is None
    assert domain.apply(state, event).case_id is None


def test_early_help_requires_a_locality():
    state = _received()
    with pytest.raises(domain.InvalidTriage) as caught:
        domain.triage(state, _triage(state, locality=None))
    assert caught.value.field == "locality"


def test_a_locality_is_only_given_for_early_help():
    state = _received()
    command = _triage(state, route=TriageRoute.SOCIAL_CARE, level_of_need=LevelOfNeed.SPECIALIST)
    with pytest.raises(domain.InvalidTriage) as caught:
        domain.triage(state, command)
    assert caught.value.field == "locality"


def test_a_referral_is_triaged_once():
    state = _received()
    triaged = domain.apply(state, domain.triage(state, _triage(state))[0])

    with pytest.raises(domain.AlreadyTriaged):
        domain.triage(triaged, _triage(triaged))


def test_a_withdrawn_referral_cannot_be_triaged():
    state = _received()
    withdrawn = domain.apply(state, domain.withdraw(state, _withdrawal(state))[0])

    with pytest.raises(domain.AlreadyWithdrawn):
        domain.triage(withdrawn, _triage(withdrawn))


def test_a_referral_that_does_not_exist_cannot_be_triaged_or_withdrawn():
    missing = _received()
    with pytest.raises(domain.ReferralNotFound):
        domain.triage(None, _triage(missing))
    with pytest.raises(domain.ReferralNotFound):
        domain.withdraw(None, _withdrawal(missing))


def test_the_referrer_withdraws_before_triage():
    state = _received()

    [event] = domain.withdraw(state, _withdrawal(state))

    assert isinstance(event, ReferralWithdrawn)
    assert event.referral_id == state.referral_id
    assert event.family_id == state.family_id
    assert event.withdrawn_by == SCHOOL
    assert event.withdrawn_at == DECIDED_AT
    assert event.reason.startswith("Sent in error")
    after = domain.apply(state, event)
    assert after.status is domain.ReferralStatus.WITHDRAWN
    assert after.version == 2


def test_another_organisation_cannot_withdraw_and_is_not_told_the_referral_exists():
    state = _received()
    with pytest.raises(domain.ReferralNotFound):
        domain.withdraw(state, _withdrawal(state, organisation_id="brent-health-visiting"))


def test_an_anonymous_referral_has_no_referrer_to_withdraw_it():
    anonymous = replace(_received(), referrer_organisation_id=None)
    with pytest.raises(domain.ReferralNotFound):
        domain.withdraw(anonymous, _withdrawal(anonymous))


def test_a_triaged_referral_cannot_be_withdrawn():
    state = _received()
    triaged = domain.apply(state, domain.triage(state, _triage(state))[0])

    with pytest.raises(domain.AlreadyTriaged):
        domain.withdraw(triaged, _withdrawal(triaged))


def test_a_referral_is_withdrawn_once():
    state = _received()
    withdrawn = domain.apply(state, domain.withdraw(state, _withdrawal(state))[0])

    with pytest.raises(domain.AlreadyWithdrawn):
        domain.withdraw(withdrawn, _withdrawal(withdrawn))


def test_replay_rebuilds_the_state_from_the_events():
    received = domain.receive(None, _command())
    state = domain.replay(received)
    assert state is not None
    replayed = domain.replay([*received, *domain.triage(state, _triage(state))])
    assert replayed is not None
    assert replayed.status is domain.ReferralStatus.TRIAGED
    assert replayed.version == 2


def test_nothing_follows_a_referral_that_was_never_received():
    state = _received()
    [event] = domain.triage(state, _triage(state))
    with pytest.raises(domain.ReferralRuleBroken):
        domain.apply(None, event)
