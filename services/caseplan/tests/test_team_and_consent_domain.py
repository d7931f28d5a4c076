"""The team around the family, consent per episode, overrides and schools: the case's
rules for them, without I/O."""

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from caseplan import domain
from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import (
    CaseClosed,
    ConsentNarrowed,
    ConsentWithdrawn,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    TeamMemberAdded,
    TeamMemberKind,
    TeamMemberRemoved,
)
from hub.contracts.codes import ConsentScope

NOW = datetime(2025, 6, 10, 9, 0, tzinfo=UTC)
ALLOCATED = CaseAllocated.example()
CASE = ALLOCATED.case_id
SHARE, FEEDBACK, PANEL = (
    ConsentScope.SHARE_WITH_PARTNERS,
    ConsentScope.REFERRER_FEEDBACK,
    ConsentScope.PANEL_DISCUSSION,
)
OPENING = domain.StandingConsent((SHARE, FEEDBACK), "Leila Hassan", NOW - timedelta(days=9))


def _open(*events):
    return domain.replay((ALLOCATED, *events))


def _one(events, model):
    [event] = events
    assert isinstance(event, model)
    return event


def _add(case, member_id="brent-health-visiting", kind=TeamMemberKind.PARTNER):
    command = domain.AddTeamMember(CASE, member_id, kind, "Health visitor", "samira-okafor", NOW)
    return domain.add_team_member(case, command)


def _remove(case, member_id="brent-health-visiting"):
    command = domain.RemoveTeamMember(CASE, member_id, None, "samira-okafor", NOW)
    return domain.remove_team_member(case, command)


def _narrow(case, purposes, opening=OPENING):
    command = domain.NarrowConsent(CASE, purposes, None, opening, "samira-okafor", NOW)
    return domain.narrow_consent(case, command)


def _withdraw(case, opening=OPENING):
    command = domain.WithdrawConsent(CASE, None, opening, "samira-okafor", NOW)
    return domain.withdraw_consent(case, command)


def _record(case, purposes=(SHARE, PANEL), given_at=NOW - timedelta(hours=1)):
    command = domain.RecordConsent(CASE, "Leila Hassan", given_at, purposes, "samira-okafor", NOW)
    return domain.record_consent(case, command)


def _override(case, review_date=date(2025, 7, 10), at=NOW):
    command = domain.RecordOverride(CASE, "Asking would alert him.", review_date, "manager", at)
    return domain.record_override(case, command)


def _end(case, at=NOW):
    return domain.end_override(case, domain.EndOverride(CASE, "Moved to a refuge.", "manager", at))


# --- the team -------------------------------------------------------------------------


def test_a_member_joins_and_leaves_the_team_by_events():
    case = _open()
    added = _one(_add(case), TeamMemberAdded)
    assert (added.member_id, added.member_kind, added.role) == (
        "brent-health-visiting",
        TeamMemberKind.PARTNER,
        "Health visitor",
    )
    case = domain.apply(case, added)
    assert [m.member_id for m in case.team] == ["brent-health-visiting"]
    removed = _one(_remove(case), TeamMemberRemoved)
    assert domain.apply(case, removed).team == ()


def test_an_unknown_organisation_is_refused_naming_member_id():
    with pytest.raises(domain.InvalidCommand) as refused:
        _add(_open(), member_id="nobody-we-know", kind=None)
    assert [e.field for e in refused.value.errors] == ["member_id"]


def test_adding_a_member_twice_or_removing_a_non_member_is_a_conflict():
    case = domain.apply(_open(), *_add(_open()))
    with pytest.raises(domain.CaseRuleBroken) as twice:
        _add(case)
    assert twice.value.code == "already-a-member"
    with pytest.raises(domain.CaseRuleBroken) as absent:
        _remove(_open())
    assert absent.value.code == "not-a-member"


def test_members_join_an_open_case_only_but_may_leave_a_closed_one():
    case = domain.apply(_open(), *_add(_open()))
    closed = domain.apply(case, CaseClosed.example().model_copy(update={"case_id": CASE}))
    with pytest.raises(domain.CaseRuleBroken) as refused:
        _add(closed, member_id="met-police-brent")
    assert refused.value.code == "case-closed"
    assert _one(_remove(closed), TeamMemberRemoved)


# --- consent --------------------------------------------------------------------------


def test_until_staff_decide_the_opening_referrals_consent_stands():
    case = _open()
    assert case.standing_consent(OPENING) == OPENING
    narrowed = _one(_narrow(case, (FEEDBACK,)), ConsentNarrowed)
    case = domain.apply(case, narrowed)
    assert case.standing_consent(OPENING).purposes == (FEEDBACK,)


def test_narrowing_must_leave_fewer_purposes_than_stand():
    for purposes in ((SHARE, FEEDBACK), (SHARE, PANEL), (PANEL,)):
        with pytest.raises(domain.InvalidCommand) as refused:
            _narrow(_open(), purposes)
        assert [(e.field, e.code) for e in refused.value.errors] == [("purposes", "not_narrower")]


def test_recorded_consent_replaces_the_opening_one_and_can_be_narrowed_then_withdrawn():
    case = domain.apply(_open(), *_record(_open()))
    assert case.standing_consent(OPENING).purposes == (SHARE, PANEL)
    case = domain.apply(case, *_narrow(case, (PANEL,)))
    standing = case.standing_consent(OPENING)
    assert (standing.purposes, standing.given_by) == ((PANEL,), "Leila Hassan")
    case = domain.apply(case, _one(_withdraw(case), ConsentWithdrawn))
    assert case.standing_consent(OPENING) is None


def test_nothing_to_narrow_or_withdraw_without_consent():
    for decide in (lambda c: _narrow(c, (SHARE,), opening=None), lambda c: _withdraw(c, None)):
        with pytest.raises(domain.CaseRuleBroken) as refused:
            decide(_open())
        assert refused.value.code == "no-consent"


def test_consent_given_in_the_future_is_refused():
    with pytest.raises(domain.InvalidCommand) as refused:
        _record(_open(), given_at=NOW + timedelta(minutes=5))
    assert [e.field for e in refused.value.errors] == ["given_at"]


def test_a_reopened_episode_starts_without_the_last_consent_or_override_but_keeps_the_team():
    case = _open(
        *_record(_open()),
        *_override(_open()),
        *_add(_open()),
    )
    assert case.consent_decided and case.override is not None
    closed = domain.apply(case, CaseClosed.example().model_copy(update={"case_id": CASE}))
    reopened = domain.apply(closed, ALLOCATED)
    assert reopened.status is domain.CaseStatus.OPEN
    assert not reopened.consent_decided and reopened.override is None
    assert reopened.standing_consent(None) is None
    assert [m.member_id for m in reopened.team] == ["brent-health-visiting"]


# --- overrides ------------------------------------------------------------------------


def test_an_override_needs_a_review_date_after_today():
    with pytest.raises(domain.InvalidCommand) as refused:
        _override(_open(), review_date=NOW.date())
    assert [e.field for e in refused.value.errors] == ["review_date"]
    recorded = _one(_override(_open()), SafeguardingOverrideRecorded)
    assert recorded.review_date == date(2025, 7, 10)


def test_an_override_is_ended_while_it_stands_only():
    with pytest.raises(domain.CaseRuleBroken) as none:
        _end(_open())
    assert none.value.code == "no-override"
    case = domain.apply(_open(), *_override(_open()))
    with pytest.raises(domain.CaseRuleBroken) as lapsed:
        _end(case, at=datetime(2025, 7, 11, 12, 0, tzinfo=UTC))
    assert lapsed.value.code == "no-override"
    ended = _one(_end(case), SafeguardingOverrideEnded)
    assert domain.apply(case, ended).override is None


# --- schools --------------------------------------------------------------------------


def _school(case, person_id, children, school_known=True, school="harlesden-primary-school"):
    command = domain.RecordChildSchool(
        CASE, person_id, school, frozenset(children), school_known, "samira-okafor", NOW
    )
    return domain.record_child_school(case, command)


def test_a_childs_school_is_a_school_partner_for_a_child_of_the_family():
    child, stranger = uuid4(), uuid4()
    with pytest.raises(domain.InvalidCommand) as refused:
        _school(_open(), stranger, {child}, school_known=False)
    assert [e.field for e in refused.value.errors] == ["person_id", "school_id"]
    case = domain.apply(_open(), *_school(_open(), child, {child}))
    assert case.school_of(child) == "harlesden-primary-school"
    with pytest.raises(domain.CaseRuleBroken) as again:
        _school(case, child, {child})
    assert again.value.code == "school-already-recorded"
    moved = domain.apply(case, *_school(case, child, {child}, school="another-school"))
    assert moved.schools == ((child, "another-school"),)


def test_every_new_event_moves_the_cases_version():
    case = _open()
    events = [*_add(case), *_record(case), *_override(case)]
    assert domain.replay((ALLOCATED, *events)).version == case.version + 3
