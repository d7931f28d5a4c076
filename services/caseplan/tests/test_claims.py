"""The Supporting Families claim rules, each one, without I/O."""

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from caseplan.claims import ClaimRules, ClaimStatus, EpisodeFacts, assess

RULES = ClaimRules(min_headline_needs=3, sustain_months=6)
CLOSED = datetime(2025, 9, 30, 15, tzinfo=UTC)
SUSTAINED_ON = date(2026, 3, 30)
MET = EpisodeFacts(
    case_id="case",
    family_id="family",
    headline_needs=frozenset({"good_education", "improved_mental_and_physical_health", "crime"}),
    lead_practitioner=True,
    assessed_at=datetime(2025, 3, 1, tzinfo=UTC),
    plan_agreed_at=datetime(2025, 3, 20, tzinfo=UTC),
    closed_at=CLOSED,
    closure_reason="needs_met",
    every_need_achieved=True,
)


def _status(facts, today=date(2026, 4, 1), rules=RULES):
    claim = assess(facts, rules, today)
    return claim.status, claim.reasons


def test_a_family_whose_needs_were_met_and_stayed_met_is_claimable_after_six_months():
    assert _status(MET, today=date(2026, 3, 29)) == (ClaimStatus.EVIDENCE_DUE, ())
    assert _status(MET, today=SUSTAINED_ON) == (ClaimStatus.CLAIMABLE, ())
    assert assess(MET, RULES, SUSTAINED_ON).sustained_on == SUSTAINED_ON


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"headline_needs": frozenset({"good_education", "crime"})}, "fewer_headline_needs"),
        ({"lead_practitioner": False}, "no_lead_practitioner"),
        ({"assessed_at": None}, "no_whole_family_assessment"),
        ({"plan_agreed_at": None}, "no_plan"),
    ],
)
def test_each_rule_at_the_start_makes_the_family_not_eligible(change, reason):
    assert _status(replace(MET, **change)) == (ClaimStatus.NOT_ELIGIBLE, (reason,))


def test_the_number_of_headline_needs_is_the_authoritys_to_set():
    two = replace(MET, headline_needs=frozenset({"good_education", "crime"}))
    assert _status(two, rules=ClaimRules(min_headline_needs=2))[0] is ClaimStatus.CLAIMABLE


def test_an_open_episode_meeting_the_start_rules_is_eligible():
    assert _status(replace(MET, closed_at=None, closure_reason=None)) == (ClaimStatus.ELIGIBLE, ())


def test_a_need_not_achieved_is_not_claimed_for():
    assert _status(replace(MET, every_need_achieved=False)) == (
        ClaimStatus.NOT_CLAIMABLE,
        ("need_not_achieved",),
    )


def test_a_family_that_moved_out_is_not_claimed_for():
    moved = replace(MET, closure_reason="moved_out_of_area")
    assert _status(moved) == (ClaimStatus.NOT_CLAIMABLE, ("closed_moved_out_of_area",))


def test_a_new_referral_or_case_while_sustaining_ends_the_claim_but_not_after():
    during = datetime(2026, 1, 10, tzinfo=UTC)
    after = datetime(2026, 3, 31, 9, tzinfo=UTC)
    assert _status(replace(MET, referrals_since_closure=(during,))) == (
        ClaimStatus.NOT_CLAIMABLE,
        ("referred_again_while_sustaining",),
    )
    assert _status(replace(MET, cases_opened_since_closure=(during,)))[1] == (
        "case_opened_while_sustaining",
    )
    assert _status(replace(MET, referrals_since_closure=(after,)))[0] is ClaimStatus.CLAIMABLE
