"""The referral aggregate: pure decisions and state, no I/O.

A referral is received (or, for a low-graded police notification, held on the
family's record), matched to the family its children are known in, then either
triaged by the front door or withdrawn by its referrer; both end the front
door's part, so neither can follow the other. Until then staff may confirm or
reject possible matches and unlink a wrong one. Everything a decision needs from
outside (ids, clocks, the caller, the records it is weighed against) comes in the
command, so the same command on the same history always decides the same.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from uuid import UUID, uuid5

from hub.contracts.base import EventData
from hub.contracts.codes import LevelOfNeed, PoliceGrade, ReferralSource, TriageRoute, Urgency
from hub.contracts.common import (
    Child,
    Concerns,
    Consent,
    HouseholdMember,
    Referrer,
    SafeguardingOverride,
)
from hub.contracts.intake import (
    MatchConfirmed,
    MatchRejected,
    PersonReidentified,
    PossibleMatchFound,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
    ReferralWithdrawn,
)
from hub.refusals import Conflict, Invalid, NotFound, RefusedField
from intake.matching import Comparison, PersonRecord, best_matches


class ReferralRuleBroken(Conflict):
    """A command the referral's current state does not allow."""

    problem = "referral-conflict"
    title = "Not possible now"


class AlreadyTriaged(ReferralRuleBroken):
    """The front door has decided on the referral already."""

    problem = "referral-already-triaged"
    title = "Already triaged"


class AlreadyWithdrawn(ReferralRuleBroken):
    """The referrer withdrew the referral."""

    problem = "referral-withdrawn"
    title = "Withdrawn"


class MatchesUnresolved(ReferralRuleBroken):
    """Staff have not yet said whether a possible match is the same child."""

    problem = "matches-unresolved"
    title = "Possible matches to resolve"


class NotMatched(ReferralRuleBroken):
    """The referral was never joined to a family the hub knew, so there is nothing to undo."""

    problem = "referral-not-matched"
    title = "Not matched"


class MatchNotFound(NotFound):
    """No such pending possible match on the referral."""

    def __init__(self, match_id: str) -> None:
        super().__init__(f"No possible match {match_id} awaiting a decision on this referral.")


class ReferralNotFound(NotFound):
    """No such referral, or none the caller may act on (it is not told which)."""

    def __init__(self, referral_id: str | None = None) -> None:
        super().__init__(f"No referral {referral_id}." if referral_id else "No such referral.")


class InvalidTriage(Invalid, ValueError):
    """A triage decision that is inconsistent in itself, whatever the referral's state."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            "The decision is not consistent.", errors=[RefusedField(field, message, "triage_rule")]
        )
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ReferralStatus(StrEnum):
    RECEIVED = "received"
    HELD = "held_for_information"
    TRIAGED = "triaged"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class PendingMatch:
    person_id: UUID
    candidate_person_id: UUID
    candidate_family_id: UUID


@dataclass(frozen=True)
class Referral:
    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    version: int
    referrer_organisation_id: str | None = None
    case_id: UUID | None = None
    person_ids: tuple[UUID, ...] = ()
    matched_existing_family: bool = False
    pending_matches: Mapping[UUID, PendingMatch] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class FamilyCase:
    """An early help case the front door knows a family has, or had."""

    case_id: UUID
    family_id: UUID
    opened_at: datetime
    closed_at: datetime | None = None


@dataclass(frozen=True)
class FrontDoorRecords:
    """What the front door already holds that a new referral is weighed against.

    The store adapter fetches it (people who might match, their families' cases,
    their held police notices) inside the transaction that appends the decision.
    """

    people: tuple[PersonRecord, ...] = ()
    cases: tuple[FamilyCase, ...] = ()
    held_low_notices: Mapping[UUID, tuple[tuple[UUID, datetime], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class FrontDoorRules:
    """The authority's settings the decisions follow."""

    re_referral_months: int = 12
    escalation_notice_count: int = 3
    escalation_window_months: int = 3


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the month's last day if shorter)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def latest_case(
    records: FrontDoorRecords, family_id: UUID, now: datetime, rules: FrontDoorRules
) -> FamilyCase | None:
    """The family's open case, else its case closed within the re-referral window."""
    cases = [case for case in records.cases if case.family_id == family_id]
    open_cases = [case for case in cases if case.closed_at is None]
    if open_cases:
        return max(open_cases, key=lambda case: case.opened_at)
    since = months_before(now, rules.re_referral_months)
    recent = [case for case in cases if case.closed_at is not None and case.closed_at >= since]
    return max(recent, key=lambda case: case.closed_at or case.opened_at, default=None)


@dataclass(frozen=True)
class ReceiveReferral:
    """A partner's referral, with the identities the hub gave it and its people."""

    referral_id: UUID
    family_id: UUID
    received_at: datetime
    referral_source: ReferralSource
    referrer: Referrer | None
    partner_reference: str | None
    urgency: Urgency
    children: tuple[Child, ...]
    household_members: tuple[HouseholdMember, ...]
    concerns: Concerns
    consent: Consent | None
    safeguarding_override: SafeguardingOverride | None
    police_grade: PoliceGrade | None = None
    records: FrontDoorRecords = FrontDoorRecords()
    rules: FrontDoorRules = FrontDoorRules()


@dataclass(frozen=True)
class TriageReferral:
    """A front-door decision on a referral.

    `new_case_id` is the id the case gets if the decision opens one (route
    early_help); the caller makes it, so that deciding stays free of side effects.
    """

    referral_id: UUID
    level_of_need: LevelOfNeed
    route: TriageRoute
    locality: str | None
    rationale: str
    decided_by: str
    decided_at: datetime
    new_case_id: UUID
    open_case_id: UUID | None = None


@dataclass(frozen=True)
class ConfirmMatch:
    referral_id: UUID
    match_id: UUID
    confirmed_by: str
    confirmed_at: datetime
    records: FrontDoorRecords = FrontDoorRecords()
    rules: FrontDoorRules = FrontDoorRules()


@dataclass(frozen=True)
class RejectMatch:
    referral_id: UUID
    match_id: UUID
    reason: str
    rejected_by: str
    rejected_at: datetime


@dataclass(frozen=True)
class UnlinkReferral:
    """Undo a wrong match: `new_family_id` is the family the referral's people start again in."""

    referral_id: UUID
    new_family_id: UUID
    reason: str
    unlinked_by: str
    unlinked_at: datetime


@dataclass(frozen=True)
class WithdrawReferral:
    """The referring organisation takes its referral back before the front door decided."""

    referral_id: UUID
    organisation_id: str
    withdrawn_by: str
    reason: str
    withdrawn_at: datetime


def stream_id(referral_id: UUID) -> str:
    return f"referral-{referral_id}"


def receive(current: Referral | None, command: ReceiveReferral) -> list[EventData]:
    """Receive a referral, joining it to the family its children are already known in.

    Each child is matched to the people the front door knows: a certain match
    takes the known person's id, and the first certain match (in the order the
    children were given) decides the family. Everything less sure, and certain
    matches into a second family, become possible matches for staff.
    """
    if current is not None:
        raise ReferralRuleBroken(f"referral {command.referral_id} already exists")
    compared = [
        (
            child,
            best_matches(
                PersonRecord.of_child(child.person_id, command.family_id, child),
                command.records.people,
            ),
        )
        for child in command.children
    ]
    family_id = _family_most_surely_matched(compared) or command.family_id
    matched = family_id != command.family_id
    children: list[Child] = []
    taken: set[UUID] = set()
    doubts: list[tuple[UUID, Comparison]] = []
    for child, comparisons in compared:
        sure = next(
            (
                c
                for c in comparisons
                if c.certain and c.known.family_id == family_id and c.known.person_id not in taken
            ),
            None,
        )
        if sure is not None:
            taken.add(sure.known.person_id)
            child = child.model_copy(update={"person_id": sure.known.person_id})
        children.append(child)
        doubts.extend((child.person_id, c) for c in comparisons if c is not sure)

    received_at = command.received_at
    case = latest_case(command.records, family_id, received_at, command.rules) if matched else None
    held, escalates = _cumulative_concern(command, family_id if matched else None)
    submitted = {
        key: value
        for key, value in vars(command).items()
        if key not in {"records", "rules", "family_id", "children"}
    }
    received = ReferralReceived(
        **submitted,
        family_id=family_id,
        children=tuple(children),
        matched_existing_family=matched,
        re_referral_of_case_id=case.case_id if case else None,
        held_for_information=held,
        escalates_notices=escalates,
    )
    possible = [
        PossibleMatchFound(
            referral_id=command.referral_id,
            family_id=family_id,
            match_id=uuid5(command.referral_id, f"{person_id}/{c.known.person_id}"),
            person_id=person_id,
            candidate_person_id=c.known.person_id,
            candidate_family_id=c.known.family_id,
            agrees_on=c.agrees_on,
            differs_on=c.differs_on,
        )
        for person_id, c in doubts
    ]
    return [received, *possible]


def _family_most_surely_matched(
    compared: list[tuple[Child, list[Comparison]]],
) -> UUID | None:
    """The known family that the most children certainly belong to (on a tie, the one
    the earliest child does, then the lowest id, so that the same records always give
    the same answer whatever order a database returned them in)."""
    votes: dict[UUID, tuple[int, int]] = {}
    for position, (_, comparisons) in enumerate(compared):
        for family in {c.known.family_id for c in comparisons if c.certain}:
            count, first = votes.get(family, (0, position))
            votes[family] = (count + 1, first)
    if not votes:
        return None
    return min(votes, key=lambda family: (-votes[family][0], votes[family][1], str(family)))


def _cumulative_concern(
    command: ReceiveReferral, family_id: UUID | None
) -> tuple[bool, tuple[UUID, ...]]:
    """Hold a low-graded police notification, or raise it with the family's earlier ones.

    The Nth low notification within the window (N and the window configurable,
    default the third within three months) goes to triage as one escalating
    concern, carrying the earlier ones, instead of N separate low items.
    """
    if command.police_grade is not PoliceGrade.LOW:
        return False, ()
    since = months_before(command.received_at, command.rules.escalation_window_months)
    earlier = ()
    if family_id is not None:
        held = command.records.held_low_notices.get(family_id, ())
        in_window = sorted((at, referral_id) for referral_id, at in held if at >= since)
        earlier = tuple(referral_id for _, referral_id in in_window)
    if len(earlier) + 1 >= command.rules.escalation_notice_count:
        return False, earlier
    return True, ()


def triage(current: Referral | None, command: TriageReferral) -> list[EventData]:
    if current is None:
        raise ReferralNotFound(str(command.referral_id))
    early_help = command.route is TriageRoute.EARLY_HELP
    if early_help and command.locality is None:
        raise InvalidTriage("locality", "is required when route is early_help")
    if not early_help and command.locality is not None:
        raise InvalidTriage("locality", "is only given when route is early_help")
    _still_awaiting_triage(current, "triaged")
    if current.pending_matches:
        raise MatchesUnresolved(
            f"referral {current.referral_id} has possible matches to confirm or reject first:"
            " they decide which family, and which open case, it belongs to"
        )
    joins = early_help and command.open_case_id is not None
    case_id = (command.open_case_id if joins else command.new_case_id) if early_help else None
    return [
        ReferralTriaged(
            referral_id=current.referral_id,
            family_id=current.family_id,
            level_of_need=command.level_of_need,
            route=command.route,
            locality=command.locality,
            case_id=case_id,
            joins_open_case=joins,
            rationale=command.rationale,
            decided_by=command.decided_by,
            decided_at=command.decided_at,
        )
    ]


def withdraw(current: Referral | None, command: WithdrawReferral) -> list[EventData]:
    # Another organisation's referral is as unknown to it as one that does not exist.
    if (
        current is None
        or current.referrer_organisation_id is None
        or current.referrer_organisation_id != command.organisation_id
    ):
        raise ReferralNotFound(str(command.referral_id))
    _still_awaiting_triage(current, "withdrawn")
    return [
        ReferralWithdrawn(
            referral_id=current.referral_id,
            family_id=current.family_id,
            withdrawn_at=command.withdrawn_at,
            withdrawn_by=command.withdrawn_by,
            reason=command.reason,
        )
    ]


def confirm_match(current: Referral | None, command: ConfirmMatch) -> list[EventData]:
    """The child is the person the hub knew: the referral joins that person's family."""
    pending = _pending(current, command.match_id, "confirmed")
    assert current is not None
    family_id = pending.candidate_family_id
    case = latest_case(command.records, family_id, command.confirmed_at, command.rules)
    return [
        MatchConfirmed(
            referral_id=current.referral_id,
            family_id=family_id,
            previous_family_id=current.family_id,
            match_id=command.match_id,
            person_id=pending.person_id,
            matched_person_id=pending.candidate_person_id,
            re_referral_of_case_id=case.case_id if case else None,
            confirmed_by=command.confirmed_by,
            confirmed_at=command.confirmed_at,
        )
    ]


def reject_match(current: Referral | None, command: RejectMatch) -> list[EventData]:
    _pending(current, command.match_id, "rejected")
    assert current is not None
    return [
        MatchRejected(
            referral_id=current.referral_id,
            family_id=current.family_id,
            match_id=command.match_id,
            reason=command.reason,
            rejected_by=command.rejected_by,
            rejected_at=command.rejected_at,
        )
    ]


def unlink(current: Referral | None, command: UnlinkReferral) -> list[EventData]:
    """Take a wrongly matched referral out of the family: its people start again, unknown.

    Only before triage: after it, the referral may have joined that family's case,
    and undoing that is the case's lead professional's decision, not the front door's.
    """
    if current is None:
        raise ReferralNotFound(str(command.referral_id))
    _still_awaiting_triage(current, "unlinked")
    if not current.matched_existing_family:
        raise NotMatched(
            f"referral {current.referral_id} was not matched to a known family: nothing to unlink"
        )
    return [
        ReferralUnlinked(
            referral_id=current.referral_id,
            family_id=command.new_family_id,
            previous_family_id=current.family_id,
            people=tuple(
                PersonReidentified(
                    previous_person_id=person_id,
                    person_id=uuid5(command.new_family_id, str(person_id)),
                )
                for person_id in current.person_ids
            ),
            reason=command.reason,
            unlinked_by=command.unlinked_by,
            unlinked_at=command.unlinked_at,
        )
    ]


def _pending(current: Referral | None, match_id: UUID, action: str) -> PendingMatch:
    if current is None:
        raise ReferralNotFound()
    _still_awaiting_triage(current, action)
    pending = current.pending_matches.get(match_id)
    if pending is None:
        raise MatchNotFound(str(match_id))
    return pending


def _still_awaiting_triage(current: Referral, action: str) -> None:
    if current.status is ReferralStatus.TRIAGED:
        raise AlreadyTriaged(
            f"referral {current.referral_id} has already been triaged and cannot be {action}"
        )
    if current.status is ReferralStatus.WITHDRAWN:
        raise AlreadyWithdrawn(
            f"referral {current.referral_id} was withdrawn by its referrer and cannot be {action}"
        )


def apply(current: Referral | None, event: EventData) -> Referral:
    if isinstance(event, ReferralReceived):
        if current is not None:
            raise ReferralRuleBroken(f"referral {event.referral_id} was received twice")
        return Referral(
            event.referral_id,
            event.family_id,
            ReferralStatus.HELD if event.held_for_information else ReferralStatus.RECEIVED,
            version=1,
            referrer_organisation_id=event.referrer.organisation_id if event.referrer else None,
            person_ids=tuple(child.person_id for child in event.children),
            matched_existing_family=event.matched_existing_family,
        )
    if current is None:
        raise ReferralRuleBroken(f"{event.event_type} before the referral was received")
    version = current.version + 1
    if isinstance(event, ReferralTriaged):
        return replace(
            current, status=ReferralStatus.TRIAGED, case_id=event.case_id, version=version
        )
    if isinstance(event, ReferralWithdrawn):
        return replace(current, status=ReferralStatus.WITHDRAWN, version=version)
    if isinstance(event, PossibleMatchFound):
        pending = PendingMatch(
            event.person_id, event.candidate_person_id, event.candidate_family_id
        )
        matches = dict(current.pending_matches) | {event.match_id: pending}
        return replace(current, pending_matches=MappingProxyType(matches), version=version)
    if isinstance(event, MatchConfirmed):
        matches = {k: v for k, v in current.pending_matches.items() if k != event.match_id}
        people = tuple(
            event.matched_person_id if person_id == event.person_id else person_id
            for person_id in current.person_ids
        )
        return replace(
            current,
            family_id=event.family_id,
            person_ids=people,
            matched_existing_family=True,
            pending_matches=MappingProxyType(matches),
            version=version,
        )
    if isinstance(event, MatchRejected):
        matches = {k: v for k, v in current.pending_matches.items() if k != event.match_id}
        return replace(current, pending_matches=MappingProxyType(matches), version=version)
    if isinstance(event, ReferralUnlinked):
        renamed = {p.previous_person_id: p.person_id for p in event.people}
        return replace(
            current,
            family_id=event.family_id,
            person_ids=tuple(renamed.get(p, p) for p in current.person_ids),
            matched_existing_family=False,
            version=version,
        )
    raise ReferralRuleBroken(f"a referral does not follow {event.event_type}")


def replay(events: Iterable[EventData]) -> Referral | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
