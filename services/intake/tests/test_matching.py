"""Matching rules and the front door's decisions that use them: pure, no I/O."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from hub.contracts.codes import (
    LevelOfNeed,
    MatchField,
    PoliceGrade,
    ReferralSource,
    TriageRoute,
    Urgency,
)
from hub.contracts.common import Child
from hub.contracts.intake import (
    MatchConfirmed,
    MatchRejected,
    PossibleMatchFound,
    ReferralReceived,
    ReferralUnlinked,
)
from intake import domain
from intake.matching import PersonRecord, best_matches, compare, normalise_name

NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
EXAMPLE = ReferralReceived.example()
AMIRA = EXAMPLE.children[0]  # NHS 9990000018, UPN G304200119123, 2015-06-12, NW10 8SE
NOTHING_KNOWN = domain.FrontDoorRecords()


def _known(child: Child = AMIRA, **changes) -> PersonRecord:
    record = PersonRecord.of_child(uuid4(), uuid4(), child)
    return replace(record, **changes)


def _child(**changes) -> Child:
    return AMIRA.model_copy(update={"person_id": uuid4(), **changes})


def _record(child: Child) -> PersonRecord:
    return PersonRecord.of_child(child.person_id, uuid4(), child)


# --- comparing one child with one known person ------------------------------------------


def test_names_are_compared_without_case_accents_or_punctuation():
    assert normalise_name("Zoë O'Neil-Smith") == normalise_name("ZOE ONEILSMITH") == "zoeoneilsmith"


def test_the_same_nhs_number_is_the_same_child_whatever_the_name_or_address():
    child = _record(
        _child(given_name="Amy", address=AMIRA.address.model_copy(update={"postcode": "HA0 1AA"}))
    )
    comparison = compare(child, _known())
    assert comparison is not None and comparison.certain
    assert MatchField.NHS_NUMBER in comparison.agrees_on


def test_a_different_nhs_number_is_a_different_child_even_with_everything_else_equal():
    assert compare(_record(_child(nhs_number="9990000026")), _known()) is None


def test_the_upn_identifies_a_child_who_has_no_nhs_number_on_record():
    comparison = compare(_record(_child(nhs_number=None)), _known())
    assert comparison is not None and comparison.certain
    assert comparison.agrees_on[0] is MatchField.UPN


def test_the_same_number_with_another_birth_date_is_only_possible():
    comparison = compare(_record(_child(date_of_birth=date(2015, 6, 21))), _known())
    assert comparison is not None and not comparison.certain
    assert MatchField.DATE_OF_BIRTH in comparison.differs_on


def test_name_birth_date_and_postcode_together_identify_a_child():
    unnumbered = _child(nhs_number=None, upn=None, given_name="AMIRA ", family_name="hassan")
    comparison = compare(_record(unnumbered), _known(nhs_number=None, upn=None))
    assert comparison is not None and comparison.certain


@pytest.mark.parametrize(
    ("changes", "differs"),
    [
        (
            {"address": AMIRA.address.model_copy(update={"postcode": "HA0 1AA"})},
            MatchField.POSTCODE,
        ),
        ({"given_name": "Ameera"}, MatchField.GIVEN_NAME),
    ],
    ids=["moved house", "name spelt otherwise"],
)
def test_a_near_demographic_match_is_possible_not_certain(changes, differs):
    child = _record(_child(nhs_number=None, upn=None, **changes))
    comparison = compare(child, _known(nhs_number=None, upn=None))
    assert comparison is not None and not comparison.certain
    assert comparison.differs_on == (differs,)


@pytest.mark.parametrize(
    "changes",
    [
        {"given_name": "Layla"},  # another child of the same family born the same day? ask no one
        {"date_of_birth": date(2016, 6, 12)},
        {"family_name": "Ahmed"},
    ],
)
def test_too_little_in_common_is_no_match(changes):
    child = _record(_child(nhs_number=None, upn=None, **changes))
    assert compare(child, _known(nhs_number=None, upn=None)) is None


def test_an_unborn_child_is_matched_by_number_only():
    unborn = _child(
        nhs_number=None, upn=None, date_of_birth=None, expected_date_of_birth=date(2025, 9, 1)
    )
    assert compare(_record(unborn), _known(nhs_number=None, upn=None)) is None


def test_best_matches_gives_one_comparison_per_person_strongest_first():
    person, family = uuid4(), uuid4()
    old_address = _known(
        person_id=person, family_id=family, nhs_number=None, upn=None, postcode="HA01AA"
    )
    numbered = _known(person_id=person, family_id=family)
    near = _known(nhs_number=None, upn=None, given_name="ameera")

    found = best_matches(_record(_child()), [old_address, near, numbered])

    assert [c.known.person_id for c in found] == [person, near.person_id]
    assert found[0].certain and not found[1].certain


# --- receiving a referral against what the front door holds --------------------------------


def _receive(records=NOTHING_KNOWN, **changes) -> domain.ReceiveReferral:
    command = domain.ReceiveReferral(
        referral_id=uuid4(),
        family_id=uuid4(),
        received_at=NOW,
        referral_source=ReferralSource.SCHOOL,
        referrer=EXAMPLE.referrer,
        partner_reference=None,
        urgency=Urgency.ROUTINE,
        children=tuple(c.model_copy(update={"person_id": uuid4()}) for c in EXAMPLE.children),
        household_members=(),
        concerns=EXAMPLE.concerns,
        consent=EXAMPLE.consent,
        safeguarding_override=None,
        records=records,
    )
    return replace(command, **changes)


def test_a_child_known_for_sure_joins_the_referral_to_their_family_under_their_id():
    known = _known()
    command = _receive(domain.FrontDoorRecords(people=(known,)))

    [received] = domain.receive(None, command)

    assert received.family_id == known.family_id
    assert received.matched_existing_family is True
    assert received.children[0].person_id == known.person_id
    assert received.children[1].person_id == command.children[1].person_id
    assert received.re_referral_of_case_id is None


def test_a_family_with_an_open_case_makes_the_referral_a_re_referral_of_it():
    known = _known()
    case = domain.FamilyCase(uuid4(), known.family_id, opened_at=NOW - timedelta(days=400))
    [received] = domain.receive(
        None, _receive(domain.FrontDoorRecords(people=(known,), cases=(case,)))
    )
    assert received.re_referral_of_case_id == case.case_id


@pytest.mark.parametrize(("closed_days_ago", "re_referral"), [(300, True), (400, False)])
def test_a_case_closed_within_twelve_months_makes_it_a_re_referral(closed_days_ago, re_referral):
    known = _known()
    case = domain.FamilyCase(
        uuid4(), known.family_id, NOW - timedelta(days=500), NOW - timedelta(days=closed_days_ago)
    )
    [received] = domain.receive(
        None, _receive(domain.FrontDoorRecords(people=(known,), cases=(case,)))
    )
    assert (received.re_referral_of_case_id == case.case_id) is re_referral


def test_an_uncertain_match_keeps_a_new_family_and_asks_staff():
    near = _known(nhs_number=None, upn=None, postcode="HA01AA")
    command = _receive(domain.FrontDoorRecords(people=(near,)))
    children = (command.children[0].model_copy(update={"nhs_number": None, "upn": None}),)

    received, possible = domain.receive(None, replace(command, children=children))

    assert received.family_id == command.family_id
    assert received.matched_existing_family is False
    assert isinstance(possible, PossibleMatchFound)
    assert possible.person_id == children[0].person_id
    assert (possible.candidate_person_id, possible.candidate_family_id) == (
        near.person_id,
        near.family_id,
    )
    assert possible.differs_on == (MatchField.POSTCODE,)


def test_certain_matches_into_a_second_family_are_left_to_staff():
    amira = _known()
    yusuf = _known(EXAMPLE.children[1])  # another family holds the brother

    received, possible = domain.receive(
        None, _receive(domain.FrontDoorRecords(people=(amira, yusuf)))
    )

    assert received.family_id == amira.family_id
    assert possible.candidate_family_id == yusuf.family_id
    assert possible.person_id == received.children[1].person_id


def test_deciding_is_deterministic_for_the_same_command():
    command = _receive(
        domain.FrontDoorRecords(people=(_known(nhs_number=None, upn=None, postcode="HA01AA"),))
    )
    command = replace(
        command,
        children=(command.children[0].model_copy(update={"nhs_number": None, "upn": None}),),
    )
    assert domain.receive(None, command) == domain.receive(None, command)


# --- confirm, reject, unlink -------------------------------------------------------------


def _with_possible_match():
    near = _known(nhs_number=None, upn=None, postcode="HA01AA")
    command = _receive(domain.FrontDoorRecords(people=(near,)))
    command = replace(
        command,
        children=(command.children[0].model_copy(update={"nhs_number": None, "upn": None}),),
    )
    events = domain.receive(None, command)
    return domain.replay(events), events[1], near


def test_a_pending_match_blocks_triage_until_resolved():
    referral, _, _ = _with_possible_match()
    triage = domain.TriageReferral(
        referral.referral_id,
        LevelOfNeed.EARLY_HELP,
        TriageRoute.EARLY_HELP,
        "brent-harlesden",
        "Needs across the family.",
        "front-door-demo",
        NOW,
        uuid4(),
    )
    with pytest.raises(domain.MatchesUnresolved):
        domain.triage(referral, triage)


def test_confirming_moves_the_referral_into_the_known_family_and_its_open_case():
    referral, possible, near = _with_possible_match()
    case = domain.FamilyCase(uuid4(), near.family_id, NOW - timedelta(days=30))
    command = domain.ConfirmMatch(
        referral.referral_id,
        possible.match_id,
        "front-door-demo",
        NOW,
        records=domain.FrontDoorRecords(cases=(case,)),
    )

    [confirmed] = domain.confirm_match(referral, command)
    after = domain.apply(referral, confirmed)

    assert isinstance(confirmed, MatchConfirmed)
    assert (confirmed.family_id, confirmed.previous_family_id) == (
        near.family_id,
        referral.family_id,
    )
    assert confirmed.matched_person_id == near.person_id
    assert confirmed.re_referral_of_case_id == case.case_id
    assert after.family_id == near.family_id and after.matched_existing_family
    assert near.person_id in after.person_ids and not after.pending_matches


def test_rejecting_keeps_the_family_and_clears_the_match():
    referral, possible, _ = _with_possible_match()
    [rejected] = domain.reject_match(
        referral,
        domain.RejectMatch(referral.referral_id, possible.match_id, "Another child.", "fd", NOW),
    )
    after = domain.apply(referral, rejected)

    assert isinstance(rejected, MatchRejected)
    assert after.family_id == referral.family_id and not after.pending_matches
    with pytest.raises(domain.MatchNotFound):
        domain.reject_match(
            after, domain.RejectMatch(referral.referral_id, possible.match_id, "Again.", "fd", NOW)
        )


def test_unlinking_undoes_a_match_with_new_people_in_a_new_family():
    known = _known()
    referral = domain.replay(
        domain.receive(None, _receive(domain.FrontDoorRecords(people=(known,))))
    )
    new_family = uuid4()

    [unlinked] = domain.unlink(
        referral, domain.UnlinkReferral(referral.referral_id, new_family, "Wrong child.", "fd", NOW)
    )
    after = domain.apply(referral, unlinked)

    assert isinstance(unlinked, ReferralUnlinked)
    assert (unlinked.family_id, unlinked.previous_family_id) == (new_family, known.family_id)
    assert known.person_id not in after.person_ids
    assert after.family_id == new_family and not after.matched_existing_family
    with pytest.raises(domain.NotMatched):
        domain.unlink(
            after, domain.UnlinkReferral(referral.referral_id, uuid4(), "Again.", "fd", NOW)
        )


def test_an_unmatched_referral_has_nothing_to_unlink():
    referral = domain.replay(domain.receive(None, _receive()))
    with pytest.raises(domain.NotMatched):
        domain.unlink(
            referral, domain.UnlinkReferral(referral.referral_id, uuid4(), "No.", "fd", NOW)
        )


def test_triage_to_early_help_joins_the_familys_open_case():
    referral = domain.replay(domain.receive(None, _receive()))
    open_case = uuid4()
    command = domain.TriageReferral(
        referral.referral_id,
        LevelOfNeed.EARLY_HELP,
        TriageRoute.EARLY_HELP,
        "brent-harlesden",
        "Second referral for the family.",
        "fd",
        NOW,
        new_case_id=uuid4(),
        open_case_id=open_case,
    )

    [triaged] = domain.triage(referral, command)

    assert triaged.case_id == open_case and triaged.joins_open_case
    [signposted] = domain.triage(
        referral, replace(command, route=TriageRoute.SIGNPOST_UNIVERSAL, locality=None)
    )
    assert signposted.case_id is None and not signposted.joins_open_case


# --- cumulative concern ------------------------------------------------------------------


def _police_notice(family_records=NOTHING_KNOWN, grade=PoliceGrade.LOW, **rules):
    return _receive(
        family_records,
        referral_source=ReferralSource.POLICE,
        police_grade=grade,
        rules=domain.FrontDoorRules(**rules),
    )


def _held(known, *days_ago):
    notices = tuple((uuid4(), NOW - timedelta(days=d)) for d in days_ago)
    return domain.FrontDoorRecords(
        people=(known,), held_low_notices={known.family_id: notices}
    ), notices


def test_a_first_low_police_notice_is_held_for_information():
    [received] = domain.receive(None, _police_notice())
    assert received.held_for_information and received.escalates_notices == ()
    assert domain.apply(None, received).status is domain.ReferralStatus.HELD


@pytest.mark.parametrize("grade", [PoliceGrade.MEDIUM, PoliceGrade.HIGH])
def test_medium_and_high_notices_go_straight_to_triage(grade):
    [received] = domain.receive(None, _police_notice(grade=grade))
    assert not received.held_for_information


def test_the_third_low_notice_within_three_months_escalates_the_earlier_two():
    records, notices = _held(_known(), 80, 20)

    [received] = domain.receive(None, _police_notice(records))

    assert not received.held_for_information
    assert received.escalates_notices == (notices[0][0], notices[1][0])  # oldest first
    assert domain.apply(None, received).status is domain.ReferralStatus.RECEIVED


def test_low_notices_older_than_the_window_do_not_count():
    records, _ = _held(_known(), 100, 20)
    [received] = domain.receive(None, _police_notice(records))
    assert received.held_for_information


def test_the_count_and_window_are_the_authoritys_to_set():
    records, _ = _held(_known(), 100)
    [received] = domain.receive(
        None, _police_notice(records, escalation_notice_count=2, escalation_window_months=6)
    )
    assert not received.held_for_information and len(received.escalates_notices) == 1


def test_months_before_keeps_the_day_or_takes_the_last_of_a_shorter_month():
    assert domain.months_before(datetime(2025, 5, 31, tzinfo=UTC), 3) == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    assert domain.months_before(datetime(2025, 2, 15, tzinfo=UTC), 3) == datetime(
        2024, 11, 15, tzinfo=UTC
    )


def test_the_family_most_children_are_known_in_wins_whatever_order_records_come_in():
    amira_a, yusuf_a = _known(), _known(EXAMPLE.children[1])
    yusuf_a = replace(yusuf_a, family_id=amira_a.family_id)
    amira_c = _known()  # the same NHS number, wrongly, in a second family
    for people in ((amira_a, yusuf_a, amira_c), (amira_c, yusuf_a, amira_a)):
        received, possible = domain.receive(None, _receive(domain.FrontDoorRecords(people=people)))
        assert received.family_id == amira_a.family_id
        assert [c.person_id for c in received.children] == [amira_a.person_id, yusuf_a.person_id]
        assert possible.candidate_family_id == amira_c.family_id
