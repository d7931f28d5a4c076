"""Supporting Families: whether a family's episode of early help meets the claim rules.

Government pays the authority for families whose needs were met and stayed met. The
rules, as the authority configures them (`EARLYHELP_CASEPLAN_SF_*`):

1. at the start, at least `min_headline_needs` different headline needs (the
   Supporting Families outcomes the assessment mapped the family's needs to);
2. a lead practitioner (the case was allocated to one);
3. a whole-family assessment and a plan (a completed assessment and a panel's package);
4. at closure, the outcome achieved on every need (and the case closed as needs met:
   a family that moved out, disengaged or was stepped up is not claimed for);
5. sustained: `sustain_months` after closure with no new referral and no new case for
   the family.

Pure: the caller gives each episode's facts as the hub recorded them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from caseplan.domain import add_months
from hub.contracts.codes import ClosureReason
from hub.contracts.dates import authority_date


class ClaimStatus(StrEnum):
    NOT_ELIGIBLE = "not_eligible"  # the family does not meet the rules at the start
    ELIGIBLE = "eligible"  # on the programme: the episode is open
    EVIDENCE_DUE = "evidence_due"  # closed with every need met: sustaining until `sustained_on`
    CLAIMABLE = "claimable"  # sustained: the claim can be made
    NOT_CLAIMABLE = "not_claimable"  # eligible at the start, but an outcome rule failed


@dataclass(frozen=True)
class ClaimRules:
    min_headline_needs: int = 3
    sustain_months: int = 6


@dataclass(frozen=True)
class EpisodeFacts:
    case_id: str
    family_id: str
    headline_needs: frozenset[str]
    lead_practitioner: bool
    assessed_at: datetime | None
    plan_agreed_at: datetime | None
    closed_at: datetime | None
    closure_reason: str | None
    every_need_achieved: bool
    # Of the family, after this episode's closure: referrals received and cases opened.
    referrals_since_closure: Sequence[datetime] = ()
    cases_opened_since_closure: Sequence[datetime] = ()


@dataclass(frozen=True)
class Claim:
    case_id: str
    family_id: str
    status: ClaimStatus
    reasons: tuple[str, ...]  # why not (eligible, claimable), as short codes
    sustained_on: date | None  # the day the outcome counts as sustained


def assess(facts: EpisodeFacts, rules: ClaimRules, today: date) -> Claim:
    """The episode's claim status on `today`, and every rule it fails."""
    start = []
    if len(facts.headline_needs) < rules.min_headline_needs:
        start.append("fewer_headline_needs")
    if not facts.lead_practitioner:
        start.append("no_lead_practitioner")
    if facts.assessed_at is None:
        start.append("no_whole_family_assessment")
    if facts.plan_agreed_at is None:
        start.append("no_plan")
    if start:
        return _claim(facts, ClaimStatus.NOT_ELIGIBLE, start, None)
    if facts.closed_at is None:
        return _claim(facts, ClaimStatus.ELIGIBLE, [], None)
    closed_on = authority_date(facts.closed_at)
    sustained_on = add_months(closed_on, rules.sustain_months)
    failed = []
    if not facts.every_need_achieved:
        failed.append("need_not_achieved")
    if facts.closure_reason != ClosureReason.NEEDS_MET.value:
        failed.append(f"closed_{facts.closure_reason}")

    def during_sustain(moment: datetime) -> bool:
        return moment > facts.closed_at and authority_date(moment) <= sustained_on

    if any(during_sustain(at) for at in facts.referrals_since_closure):
        failed.append("referred_again_while_sustaining")
    if any(during_sustain(at) for at in facts.cases_opened_since_closure):
        failed.append("case_opened_while_sustaining")
    if failed:
        return _claim(facts, ClaimStatus.NOT_CLAIMABLE, failed, sustained_on)
    if today < sustained_on:
        return _claim(facts, ClaimStatus.EVIDENCE_DUE, [], sustained_on)
    return _claim(facts, ClaimStatus.CLAIMABLE, [], sustained_on)


def _claim(facts: EpisodeFacts, status: ClaimStatus, reasons, sustained_on) -> Claim:
    return Claim(facts.case_id, facts.family_id, status, tuple(reasons), sustained_on)
