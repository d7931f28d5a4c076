"""The early help case aggregate: pure decisions and state, no I/O.

A case's history has two sources. Allocation's events (`CaseAllocated`,
`PanelDecisionRecorded`) arrive from Kafka; case plan's own events are its
stream in the event store. The `cases` projection keeps both and folds them
in time order with `apply`, once per event, and stores the `Case` beside its
view: commands decide on that stored case, so the case is opened (and
reopened) by allocation's fact itself, not by a copy case plan would have to
publish and keep in step. Only own events move `version`, the
optimistic-concurrency guard of the own stream.

Everything a decision needs from outside (ids, clocks, the caller, the
configured review interval) comes in the command.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.base import EventData
from hub.contracts.caseplan import (
    AssessedRole,
    AssessmentCompleted,
    AssessmentDomain,
    CaseClosed,
    CaseplanEvent,
    CaseSteppedDown,
    CaseSteppedUp,
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    FamilyViews,
    IdentifiedNeed,
    NeedOutcome,
    NeedProgress,
    PersonAssessment,
    PlanActionAdded,
    PlanOutcomeAgreed,
    PlanReviewed,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    ServiceStarted,
    SteppedDownChild,
    TeamMemberAdded,
    TeamMemberKind,
    TeamMemberRemoved,
)
from hub.contracts.codes import CinFactor, ClosureReason, ConsentScope, LevelOfNeed
from hub.contracts.common import SocialCareContact
from hub.contracts.dates import authority_date
from hub.refusals import Conflict, Invalid, NotFound, RefusedField


class CaseNotFound(NotFound):
    """No case with this id (allocation has not opened it, nor social care stepped it down)."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"No case {case_id}." if case_id else "No such case.")


class CaseRuleBroken(Conflict):
    """A command the case's current state does not allow; `code` names the rule."""

    title = "Not allowed now"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, problem=code)
        self.code = code


@dataclass(frozen=True)
class InvalidField:
    field: str
    message: str
    code: str


class InvalidCommand(Invalid, ValueError):
    """A command inconsistent with itself or the case; every field at fault is named."""

    def __init__(self, errors: Sequence[InvalidField]) -> None:
        super().__init__(
            "The request does not fit the case.",
            errors=[RefusedField(e.field, e.message, e.code) for e in errors],
        )

    def __str__(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)


class CaseStatus(StrEnum):
    AWAITING_ALLOCATION = "awaiting_allocation"  # stepped down, not yet allocated
    OPEN = "open"
    STEPPED_UP = "stepped_up"
    CLOSED = "closed"


@dataclass(frozen=True)
class TeamMember:
    """An organisation on the team around the family, added by staff (an event)."""

    member_id: str
    member_kind: TeamMemberKind
    role: str
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class StandingConsent:
    """The family's consent as it stands for the episode. `given_by` and `given_at` are
    unknown (None) when staff narrowed the consent the opening referral carried."""

    purposes: tuple[ConsentScope, ...]
    given_by: str | None = None
    given_at: datetime | None = None
    narrowed_at: datetime | None = None


@dataclass(frozen=True)
class SafeguardingOverride:
    reason: str
    decided_by: str
    decided_at: datetime
    review_date: date

    def stands_on(self, day: date) -> bool:
        """It lapses after its review date unless renewed."""
        return day <= self.review_date


# A service of a panel's package, as (provider id, service): what a start is recorded against.
PackagedService = tuple[str, str]


@dataclass(frozen=True)
class Case:
    case_id: UUID
    family_id: UUID
    status: CaseStatus
    version: int = 0
    needs: tuple[IdentifiedNeed, ...] = ()
    assessed: bool = False
    plan_active: bool = False
    # The team around the family and the children's schools stay with the case across
    # episodes until staff change them; consent and an override belong to one episode.
    team: tuple[TeamMember, ...] = ()
    schools: tuple[tuple[UUID, str], ...] = ()
    # False until staff record, narrow or withdraw consent in this episode: until then
    # the consent of the referral that opened the episode stands (known to the caller).
    consent_decided: bool = False
    consent: StandingConsent | None = None
    override: SafeguardingOverride | None = None
    # The services (provider id, service) of the package the latest panel decision of this
    # episode agreed, and those of them recorded as started.
    package: tuple[PackagedService, ...] = ()
    services_started: tuple[PackagedService, ...] = ()

    def need(self, need_id: UUID) -> IdentifiedNeed | None:
        return next((n for n in self.needs if n.need_id == need_id), None)

    def member(self, member_id: str) -> TeamMember | None:
        return next((m for m in self.team if m.member_id == member_id), None)

    def school_of(self, person_id: UUID) -> str | None:
        return next((school for child, school in self.schools if child == person_id), None)

    def standing_consent(self, opening: StandingConsent | None) -> StandingConsent | None:
        """The consent that stands: staff's latest decision in this episode, else the
        consent of the referral that opened it (`opening`)."""
        return self.consent if self.consent_decided else opening


# --- commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class AssessmentDraft:
    """An assessment as far as it is written: any part may still be missing."""

    factors: tuple[CinFactor, ...] = ()
    needs: tuple[IdentifiedNeed, ...] = ()
    recommended_level_of_need: LevelOfNeed | None = None
    people: tuple[PersonAssessment, ...] = ()
    views: FamilyViews | None = None


@dataclass(frozen=True)
class CompleteAssessment:
    case_id: UUID
    assessment_id: UUID
    draft: AssessmentDraft
    completed_by: str
    completed_at: datetime


@dataclass(frozen=True)
class AddAction:
    case_id: UUID
    action_id: UUID
    need_id: UUID | None
    what: str
    who: str
    by_when: date
    added_by: str
    added_at: datetime


@dataclass(frozen=True)
class AgreeOutcome:
    case_id: UUID
    need_id: UUID
    statement: str
    measure: str | None
    agreed_by: str
    agreed_at: datetime


@dataclass(frozen=True)
class ReviewPlan:
    case_id: UUID
    review_id: UUID
    progress: tuple[NeedProgress, ...]
    next_review_date: date
    reviewed_by: str
    reviewed_at: datetime
    max_interval_months: int


@dataclass(frozen=True)
class StepUp:
    case_id: UUID
    reason: str
    factors: tuple[CinFactor, ...]
    social_care_contact: SocialCareContact
    decided_by: str
    stepped_up_at: datetime


@dataclass(frozen=True)
class StepDown:
    case_id: UUID
    family_id: UUID
    social_care_reference: str
    children: tuple[SteppedDownChild, ...]
    reason: str
    social_care_summary: str
    locality: str | None
    stepped_down_at: datetime


@dataclass(frozen=True)
class CloseCase:
    case_id: UUID
    reason: ClosureReason
    reason_detail: str | None
    achieved: tuple[tuple[UUID, bool], ...]
    closed_by: str
    closed_at: datetime


@dataclass(frozen=True)
class AddTeamMember:
    case_id: UUID
    member_id: str
    member_kind: TeamMemberKind | None  # None: neither a partner nor a known provider
    role: str
    added_by: str
    added_at: datetime


@dataclass(frozen=True)
class RemoveTeamMember:
    case_id: UUID
    member_id: str
    reason: str | None
    removed_by: str
    removed_at: datetime


@dataclass(frozen=True)
class RecordConsent:
    case_id: UUID
    given_by: str
    given_at: datetime
    purposes: tuple[ConsentScope, ...]
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class NarrowConsent:
    case_id: UUID
    purposes: tuple[ConsentScope, ...]
    reason: str | None
    opening: StandingConsent | None  # the opening referral's consent, if any
    narrowed_by: str
    narrowed_at: datetime


@dataclass(frozen=True)
class WithdrawConsent:
    case_id: UUID
    reason: str | None
    opening: StandingConsent | None
    withdrawn_by: str
    withdrawn_at: datetime


@dataclass(frozen=True)
class RecordOverride:
    case_id: UUID
    reason: str
    review_date: date
    decided_by: str
    decided_at: datetime


@dataclass(frozen=True)
class EndOverride:
    case_id: UUID
    reason: str
    ended_by: str
    ended_at: datetime


@dataclass(frozen=True)
class RecordChildSchool:
    case_id: UUID
    person_id: UUID
    school_id: str
    children: frozenset[UUID]  # the children of the case's family
    school_known: bool  # the school is a partner of type school
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class RecordServiceStart:
    case_id: UUID
    provider_id: str
    service: str
    started_on: date
    recorded_by: str
    recorded_at: datetime


def stream_id(case_id: UUID) -> str:
    return f"case-{case_id}"


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day when it has no such day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# --- decisions -----------------------------------------------------------------------


def missing_for_completion(draft: AssessmentDraft) -> list[InvalidField]:
    """Everything a draft still lacks before it can be completed, each field by name."""
    missing: list[InvalidField] = []
    if not draft.factors:
        missing.append(InvalidField("factors", "at least one CIN factor code (or 21)", "missing"))
    if not draft.needs and CinFactor.NO_FACTORS not in draft.factors:
        missing.append(InvalidField("needs", "at least one identified need", "missing"))
    if draft.recommended_level_of_need is None:
        missing.append(InvalidField("recommended_level_of_need", "is required", "missing"))
    roles = {person.role for person in draft.people}
    for role in AssessedRole:
        if role not in roles:
            missing.append(
                InvalidField("people", f"assess at least one {role.value} of the family", "missing")
            )
    for index, person in enumerate(draft.people):
        covered = {finding.domain for finding in person.findings}
        for domain in AssessmentDomain:
            if domain not in covered:
                missing.append(
                    InvalidField(
                        f"people[{index}].findings",
                        f"strengths and needs for {domain.value} are missing",
                        "missing",
                    )
                )
    if draft.views is None:
        missing.append(InvalidField("views", "the views of the child and of the family", "missing"))
    return missing


def complete_assessment(case: Case | None, command: CompleteAssessment) -> list[EventData]:
    current = _workable(case, "completed")
    if current.assessed:
        raise CaseRuleBroken(
            "assessment-already-completed",
            f"case {current.case_id} already has a completed assessment for this episode",
        )
    if missing := missing_for_completion(command.draft):
        raise InvalidCommand(missing)
    draft = command.draft
    return [
        AssessmentCompleted(
            case_id=current.case_id,
            family_id=current.family_id,
            assessment_id=command.assessment_id,
            completed_at=command.completed_at,
            completed_by=command.completed_by,
            factors=draft.factors,
            needs=draft.needs,
            recommended_level_of_need=draft.recommended_level_of_need,
            people=draft.people,
            views=draft.views,
        )
    ]


def add_action(case: Case | None, command: AddAction) -> list[EventData]:
    current = _planning(case)
    if command.need_id is not None and current.need(command.need_id) is None:
        raise InvalidCommand([_unknown_need("need_id", command.need_id)])
    if command.by_when < authority_date(command.added_at):
        raise InvalidCommand([InvalidField("by_when", "must not be in the past", "in_past")])
    return [
        PlanActionAdded(
            case_id=current.case_id,
            family_id=current.family_id,
            action_id=command.action_id,
            need_id=command.need_id,
            what=command.what,
            who=command.who,
            by_when=command.by_when,
            added_at=command.added_at,
            added_by=command.added_by,
        )
    ]


def agree_outcome(case: Case | None, command: AgreeOutcome) -> list[EventData]:
    current = _planning(case)
    need = current.need(command.need_id)
    if need is None:
        raise InvalidCommand([_unknown_need("need_id", command.need_id)])
    return [
        PlanOutcomeAgreed(
            case_id=current.case_id,
            family_id=current.family_id,
            need_id=need.need_id,
            outcome=need.outcome,
            statement=command.statement,
            measure=command.measure,
            agreed_at=command.agreed_at,
            agreed_by=command.agreed_by,
        )
    ]


def review(case: Case | None, command: ReviewPlan) -> list[EventData]:
    current = _workable(case, "reviewed")
    if not current.plan_active:
        raise CaseRuleBroken(
            "no-active-plan", f"case {current.case_id} has no active plan to review yet"
        )
    errors: list[InvalidField] = []
    reviewed = [item.need_id for item in command.progress]
    for index, need_id in enumerate(reviewed):
        if current.need(need_id) is None:
            errors.append(_unknown_need(f"progress[{index}].need_id", need_id))
    for need in current.needs:
        if need.need_id not in reviewed:
            errors.append(
                InvalidField("progress", f"no progress given for need {need.need_id}", "missing")
            )
    today = authority_date(command.reviewed_at)
    latest = add_months(today, command.max_interval_months)
    if command.next_review_date <= today:
        errors.append(InvalidField("next_review_date", "must be after today", "not_after_today"))
    elif command.next_review_date > latest:
        errors.append(
            InvalidField(
                "next_review_date",
                f"must be no later than {latest.isoformat()} "
                f"({command.max_interval_months} months from today)",
                "beyond_max_interval",
            )
        )
    if errors:
        raise InvalidCommand(errors)
    return [
        PlanReviewed(
            case_id=current.case_id,
            family_id=current.family_id,
            review_id=command.review_id,
            reviewed_at=command.reviewed_at,
            reviewed_by=command.reviewed_by,
            progress=command.progress,
            next_review_date=command.next_review_date,
        )
    ]


def step_up(case: Case | None, command: StepUp) -> list[EventData]:
    current = _workable(case, "stepped up")
    return [
        CaseSteppedUp(
            case_id=current.case_id,
            family_id=current.family_id,
            stepped_up_at=command.stepped_up_at,
            reason=command.reason,
            factors=command.factors,
            social_care_contact=command.social_care_contact,
            decided_by=command.decided_by,
        )
    ]


def step_down(case: Case | None, command: StepDown) -> list[EventData]:
    if case is not None:
        raise CaseRuleBroken(
            "already-stepped-down",
            f"social care reference {command.social_care_reference} was stepped down already "
            f"as case {case.case_id}",
        )
    return [
        CaseSteppedDown(
            case_id=command.case_id,
            family_id=command.family_id,
            social_care_reference=command.social_care_reference,
            stepped_down_at=command.stepped_down_at,
            children=command.children,
            reason=command.reason,
            social_care_summary=command.social_care_summary,
            locality=command.locality,
        )
    ]


def close(case: Case | None, command: CloseCase) -> list[EventData]:
    if case is None:
        raise CaseNotFound(str(command.case_id))
    if case.status is CaseStatus.CLOSED:
        raise CaseRuleBroken("case-closed", f"case {case.case_id} is closed already")
    if case.status is CaseStatus.AWAITING_ALLOCATION:
        raise CaseRuleBroken(
            "case-not-allocated", f"case {case.case_id} has not been allocated yet"
        )
    errors: list[InvalidField] = []
    if command.reason is ClosureReason.OTHER and command.reason_detail is None:
        errors.append(InvalidField("reason_detail", "is required when reason is other", "missing"))
    # As the CIN census refuses RC8/RC9 without an assessment: needs cannot be met
    # if they were never identified.
    if command.reason is ClosureReason.NEEDS_MET and not case.assessed:
        errors.append(
            InvalidField("reason", "needs_met needs a completed assessment", "not_assessed")
        )
    given = [need_id for need_id, _ in command.achieved]
    for index, need_id in enumerate(given):
        if case.need(need_id) is None:
            errors.append(_unknown_need(f"outcomes[{index}].need_id", need_id))
    for need in case.needs:
        if need.need_id not in given:
            errors.append(
                InvalidField("outcomes", f"no outcome given for need {need.need_id}", "missing")
            )
    if errors:
        raise InvalidCommand(errors)
    by_id = dict(command.achieved)
    return [
        CaseClosed(
            case_id=case.case_id,
            family_id=case.family_id,
            closed_at=command.closed_at,
            closed_by=command.closed_by,
            reason=command.reason,
            reason_detail=command.reason_detail,
            outcomes=tuple(
                NeedOutcome(need_id=n.need_id, outcome=n.outcome, achieved=by_id[n.need_id])
                for n in case.needs
            ),
        )
    ]


# --- the team around the family, consent, overrides, schools --------------------------


def add_team_member(case: Case | None, command: AddTeamMember) -> list[EventData]:
    current = _workable(case, "given a team member")
    if command.member_kind is None:
        raise InvalidCommand(
            [
                InvalidField(
                    "member_id",
                    "is neither a partner of the hub nor a provider case plan knows",
                    "unknown",
                )
            ]
        )
    if current.member(command.member_id) is not None:
        raise CaseRuleBroken(
            "already-a-member",
            f"{command.member_id} is on the team of case {current.case_id} already",
        )
    return [
        TeamMemberAdded(
            case_id=current.case_id,
            family_id=current.family_id,
            member_id=command.member_id,
            member_kind=command.member_kind,
            role=command.role,
            added_at=command.added_at,
            added_by=command.added_by,
        )
    ]


def remove_team_member(case: Case | None, command: RemoveTeamMember) -> list[EventData]:
    current = _existing(case)
    if current.member(command.member_id) is None:
        raise CaseRuleBroken(
            "not-a-member",
            f"{command.member_id} is not on the team of case {current.case_id}",
        )
    return [
        TeamMemberRemoved(
            case_id=current.case_id,
            family_id=current.family_id,
            member_id=command.member_id,
            removed_at=command.removed_at,
            removed_by=command.removed_by,
            reason=command.reason,
        )
    ]


def record_consent(case: Case | None, command: RecordConsent) -> list[EventData]:
    current = _open_or_stepped_up(case, "given consent")
    if command.given_at > command.recorded_at:
        raise InvalidCommand([InvalidField("given_at", "must not be in the future", "in_future")])
    return [
        ConsentRecorded(
            case_id=current.case_id,
            family_id=current.family_id,
            given_by=command.given_by,
            given_at=command.given_at,
            purposes=command.purposes,
            recorded_at=command.recorded_at,
            recorded_by=command.recorded_by,
        )
    ]


def narrow_consent(case: Case | None, command: NarrowConsent) -> list[EventData]:
    current = _existing(case)
    standing = _consent_standing(current, command.opening)
    if not set(command.purposes) < set(standing.purposes):
        raise InvalidCommand(
            [
                InvalidField(
                    "purposes",
                    "must be fewer of the purposes that stand ("
                    + ", ".join(p.value for p in standing.purposes)
                    + "); record consent again to widen it",
                    "not_narrower",
                )
            ]
        )
    return [
        ConsentNarrowed(
            case_id=current.case_id,
            family_id=current.family_id,
            purposes=command.purposes,
            narrowed_at=command.narrowed_at,
            narrowed_by=command.narrowed_by,
            reason=command.reason,
        )
    ]


def withdraw_consent(case: Case | None, command: WithdrawConsent) -> list[EventData]:
    current = _existing(case)
    _consent_standing(current, command.opening)
    return [
        ConsentWithdrawn(
            case_id=current.case_id,
            family_id=current.family_id,
            withdrawn_at=command.withdrawn_at,
            withdrawn_by=command.withdrawn_by,
            reason=command.reason,
        )
    ]


def record_override(case: Case | None, command: RecordOverride) -> list[EventData]:
    """A new override; recorded again while one stands, it renews it."""
    current = _open_or_stepped_up(case, "given a safeguarding override")
    if command.review_date <= authority_date(command.decided_at):
        raise InvalidCommand(
            [InvalidField("review_date", "must be after today", "not_after_today")]
        )
    return [
        SafeguardingOverrideRecorded(
            case_id=current.case_id,
            family_id=current.family_id,
            reason=command.reason,
            decided_by=command.decided_by,
            decided_at=command.decided_at,
            review_date=command.review_date,
        )
    ]


def end_override(case: Case | None, command: EndOverride) -> list[EventData]:
    current = _existing(case)
    override = current.override
    if override is None or not override.stands_on(authority_date(command.ended_at)):
        lapsed = "" if override is None else f" (it lapsed after {override.review_date})"
        raise CaseRuleBroken(
            "no-override", f"case {current.case_id} has no standing safeguarding override{lapsed}"
        )
    return [
        SafeguardingOverrideEnded(
            case_id=current.case_id,
            family_id=current.family_id,
            ended_at=command.ended_at,
            ended_by=command.ended_by,
            reason=command.reason,
        )
    ]


def record_child_school(case: Case | None, command: RecordChildSchool) -> list[EventData]:
    current = _open_or_stepped_up(case, "given a child's school")
    errors: list[InvalidField] = []
    if command.person_id not in command.children:
        errors.append(InvalidField("person_id", "is not a child of this case's family", "unknown"))
    if not command.school_known:
        errors.append(InvalidField("school_id", "is not a school partner of the hub", "unknown"))
    if errors:
        raise InvalidCommand(errors)
    if current.school_of(command.person_id) == command.school_id:
        raise CaseRuleBroken(
            "school-already-recorded",
            f"{command.school_id} is recorded as this child's school already",
        )
    return [
        ChildSchoolRecorded(
            case_id=current.case_id,
            family_id=current.family_id,
            person_id=command.person_id,
            school_id=command.school_id,
            recorded_at=command.recorded_at,
            recorded_by=command.recorded_by,
        )
    ]


def record_service_start(case: Case | None, command: RecordServiceStart) -> list[EventData]:
    """A service of the agreed package started: once per service and episode, on a day
    not after today (the 4-week measure counts to it)."""
    current = _workable(case, "given a service start")
    if not current.plan_active:
        raise CaseRuleBroken(
            "no-package", f"case {current.case_id} has no package agreed by a panel yet"
        )
    started = (command.provider_id, command.service)
    if started not in current.package:
        agreed = "; ".join(f"{service} ({provider})" for provider, service in current.package)
        raise InvalidCommand(
            [
                InvalidField(
                    "service",
                    f"is not a service of the package agreed for this case: {agreed}",
                    "not_in_package",
                )
            ]
        )
    if command.started_on > authority_date(command.recorded_at):
        raise InvalidCommand([InvalidField("started_on", "must not be in the future", "future")])
    if started in current.services_started:
        raise CaseRuleBroken(
            "service-already-started",
            f"{command.service} ({command.provider_id}) is recorded as started already",
        )
    return [
        ServiceStarted(
            case_id=current.case_id,
            family_id=current.family_id,
            provider_id=command.provider_id,
            service=command.service,
            started_on=command.started_on,
            recorded_at=command.recorded_at,
            recorded_by=command.recorded_by,
        )
    ]


def _consent_standing(case: Case, opening: StandingConsent | None) -> StandingConsent:
    standing = case.standing_consent(opening)
    if standing is None:
        raise CaseRuleBroken(
            "no-consent", f"case {case.case_id} has no consent standing in this episode"
        )
    return standing


def _existing(case: Case | None) -> Case:
    if case is None:
        raise CaseNotFound("")
    return case


def _open_or_stepped_up(case: Case | None, action: str) -> Case:
    """Consent, overrides and schools are still recorded on a case stepped up (social care
    works with the family and the partners), never on a closed one."""
    current = _existing(case)
    if current.status is CaseStatus.CLOSED:
        raise CaseRuleBroken(
            "case-closed", f"case {current.case_id} is closed and cannot be {action}"
        )
    if current.status is CaseStatus.AWAITING_ALLOCATION:
        raise CaseRuleBroken(
            "case-not-allocated",
            f"case {current.case_id} has not been allocated yet and cannot be {action}",
        )
    return current


def _workable(case: Case | None, action: str) -> Case:
    """The case, if it is open to practitioners' work; otherwise why not."""
    if case is None:
        raise CaseNotFound("")
    if case.status is CaseStatus.CLOSED:
        raise CaseRuleBroken("case-closed", f"case {case.case_id} is closed and cannot be {action}")
    if case.status is CaseStatus.STEPPED_UP:
        raise CaseRuleBroken(
            "case-stepped-up",
            f"case {case.case_id} is stepped up to social care and cannot be {action}",
        )
    if case.status is CaseStatus.AWAITING_ALLOCATION:
        raise CaseRuleBroken(
            "case-not-allocated",
            f"case {case.case_id} has not been allocated yet and cannot be {action}",
        )
    return case


def _planning(case: Case | None) -> Case:
    current = _workable(case, "planned")
    if not current.assessed:
        raise CaseRuleBroken(
            "not-assessed",
            f"case {current.case_id} needs a completed assessment before its plan is written",
        )
    return current


def _unknown_need(field_name: str, need_id: UUID) -> InvalidField:
    return InvalidField(field_name, f"{need_id} is not a need identified on this case", "unknown")


# --- state ---------------------------------------------------------------------------


def opens_episode(current: Case | None, event: EventData) -> bool:
    """Whether `event` starts an episode of work on the case: its first allocation, the
    allocation of a case stepped down, or a re-referral reopening a closed case."""
    return isinstance(event, CaseAllocated) and (
        current is None or current.status in (CaseStatus.AWAITING_ALLOCATION, CaseStatus.CLOSED)
    )


def apply(current: Case | None, event: EventData) -> Case:
    """The case after `event`. Allocation's events are facts and always apply."""
    if isinstance(event, CaseAllocated):
        if current is None:
            return Case(event.case_id, event.family_id, CaseStatus.OPEN)
        if opens_episode(current, event):
            # After closure this is a re-referral reopening the case: a new episode
            # that needs its own assessment and plan, and its own consent.
            return Case(
                current.case_id,
                current.family_id,
                CaseStatus.OPEN,
                current.version,
                team=current.team,
                schools=current.schools,
            )
        return current  # a reallocation changes the lead professional, no rule here
    if isinstance(event, PanelDecisionRecorded):
        if current is None:
            raise ValueError(f"panel decision for case {event.case_id} before its allocation")
        package = tuple((s.provider_id, s.service) for s in event.package)
        return replace(current, plan_active=True, package=package)
    if not isinstance(event, CaseplanEvent):
        raise ValueError(f"a case does not follow {event.event_type}")
    if isinstance(event, CaseSteppedDown):
        return Case(
            case_id=event.case_id,
            family_id=event.family_id,
            status=CaseStatus.AWAITING_ALLOCATION,
            version=1,
        )
    if current is None:
        raise ValueError(f"{event.event_type} before case {event.case_id} was opened")
    current = replace(current, version=current.version + 1)
    if isinstance(event, AssessmentCompleted):
        return replace(current, assessed=True, needs=event.needs)
    if isinstance(event, CaseSteppedUp):
        return replace(current, status=CaseStatus.STEPPED_UP)
    if isinstance(event, CaseClosed):
        return replace(current, status=CaseStatus.CLOSED)
    if isinstance(event, PlanActionAdded | PlanOutcomeAgreed | PlanReviewed):
        return current
    if isinstance(event, ServiceStarted):
        started = (event.provider_id, event.service)
        return replace(current, services_started=(*current.services_started, started))
    return _apply_sharing(current, event)


def _apply_sharing(current: Case, event: CaseplanEvent) -> Case:
    """The team, consent, override and schools after one of their events."""
    if isinstance(event, TeamMemberAdded):
        member = TeamMember(
            event.member_id, event.member_kind, event.role, event.added_at, event.added_by
        )
        return replace(current, team=(*current.team, member))
    if isinstance(event, TeamMemberRemoved):
        team = tuple(m for m in current.team if m.member_id != event.member_id)
        return replace(current, team=team)
    if isinstance(event, ConsentRecorded):
        consent = StandingConsent(event.purposes, event.given_by, event.given_at)
        return replace(current, consent_decided=True, consent=consent)
    if isinstance(event, ConsentNarrowed):
        earlier = current.consent if current.consent_decided else None
        consent = StandingConsent(
            event.purposes,
            earlier.given_by if earlier else None,
            earlier.given_at if earlier else None,
            narrowed_at=event.narrowed_at,
        )
        return replace(current, consent_decided=True, consent=consent)
    if isinstance(event, ConsentWithdrawn):
        return replace(current, consent_decided=True, consent=None)
    if isinstance(event, SafeguardingOverrideRecorded):
        override = SafeguardingOverride(
            event.reason, event.decided_by, event.decided_at, event.review_date
        )
        return replace(current, override=override)
    if isinstance(event, SafeguardingOverrideEnded):
        return replace(current, override=None)
    if isinstance(event, ChildSchoolRecorded):
        schools = tuple((c, s) for c, s in current.schools if c != event.person_id)
        return replace(current, schools=(*schools, (event.person_id, event.school_id)))
    raise ValueError(f"a case does not follow {event.event_type}")


def replay(events: Iterable[EventData]) -> Case | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
