"""What case plan accepts and answers: cases, assessments, plans, reviews, reports."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from hub.contracts import caseplan as events
from hub.contracts.caseplan import FamilyViews, NeedProgress, PersonAssessment
from hub.contracts.codes import (
    CinFactor,
    ClosureReason,
    ConsentScope,
    LevelOfNeed,
    SupportingFamiliesOutcome,
)
from hub.contracts.common import (
    Actor,
    DateOfBirth,
    IsoDate,
    Name,
    Narrative,
    PastDateTime,
    ShortText,
    SocialCareContact,
    check_cin_factors,
    duplicates,
)
from hub.contracts.dates import NotAfterToday
from hub.contracts.identifiers import Slug


class ChronologyEntry(BaseModel):
    event_id: UUID
    event_type: str = Field(examples=["earlyhelp.referral.received.v1"])
    occurred_at: datetime = Field(description="When it happened, by the service that recorded it.")
    recorded_at: datetime = Field(description="When the chronology learnt of it.")
    service: str = Field(description="The service that recorded it.", examples=["intake"])
    subject: str | None = Field(description="The referral or case it is about.")
    actor: str | None = Field(description="Who did it, as far as the event says.")
    summary: str


class InvolvedParty(BaseModel):
    kind: str = Field(
        description="referrer, lead_professional, team, provider, social_care, team_member "
        "or school",
        examples=["lead_professional"],
    )
    party_id: str
    name: str
    detail: str | None = Field(description="Role and contact, team locality, or service.")
    first_seen_at: datetime
    last_seen_at: datetime


class Chronology(BaseModel):
    family_id: UUID
    entries: list[ChronologyEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; absent on the last page."
    )
    involved: list[InvolvedParty] = Field(
        description="Who else is working with this family: every organisation, team and "
        "professional the events name, most recently seen first."
    )


class _Request(BaseModel):
    """What callers send. Dates are ISO 8601 strings and booleans true or false only, as
    the schema says: pydantic's lax mode would read 0 as 1 January 1970 and "off" as false."""

    model_config = ConfigDict(extra="forbid")


class NeedInput(_Request):
    need_id: UUID | None = Field(
        default=None, description="Given by the hub when absent; keep it across draft saves."
    )
    outcome: SupportingFamiliesOutcome
    description: Narrative
    person_id: UUID | None = None


class AssessmentSubmission(_Request):
    """A whole-family assessment: saved as a draft, or completed when `complete` is true.

    A draft may leave anything out; completing it needs every part (each missing
    one is named in the 422).
    """

    complete: StrictBool = Field(default=False, description="Complete it (else save as the draft).")
    factors: list[CinFactor] = Field(default_factory=list)
    needs: list[NeedInput] = Field(default_factory=list)
    recommended_level_of_need: LevelOfNeed | None = None
    people: list[PersonAssessment] = Field(default_factory=list)
    views: FamilyViews | None = None

    @field_validator("factors")
    @classmethod
    def _factors_valid(cls, factors: list[CinFactor]) -> list[CinFactor]:
        check_cin_factors(factors, "factors")
        return factors

    @field_validator("needs")
    @classmethod
    def _each_need_once(cls, needs: list[NeedInput]) -> list[NeedInput]:
        if repeated := duplicates(n.need_id for n in needs if n.need_id is not None):
            raise ValueError(f"need_id {repeated[0]} is given more than once")
        return needs


class AssessmentDraftView(BaseModel):
    case_id: UUID
    saved_at: datetime
    saved_by: str
    draft: dict[str, Any]
    missing: list[dict[str, str]] = Field(
        description="What the draft still lacks before it can be completed."
    )


class AssessmentRecorded(BaseModel):
    case_id: UUID
    assessment_id: UUID
    completed_at: datetime
    needs: list[dict[str, Any]]


class ActionSubmission(_Request):
    what: Narrative
    who: ShortText
    by_when: IsoDate
    need_id: UUID | None = None


class OutcomeSubmission(_Request):
    need_id: UUID
    statement: Narrative
    measure: ShortText | None = None


class ReviewSubmission(_Request):
    progress: list[NeedProgress] = Field(min_length=1)
    next_review_date: IsoDate

    @field_validator("progress")
    @classmethod
    def _each_need_once(cls, progress: list[NeedProgress]) -> list[NeedProgress]:
        if repeated := duplicates(item.need_id for item in progress):
            raise ValueError(f"need_id {repeated[0]} is given more than once")
        return progress


class StepUpSubmission(_Request):
    reason: Narrative
    factors: list[CinFactor] = Field(min_length=1)
    social_care_contact: SocialCareContact

    @field_validator("factors")
    @classmethod
    def _factors_valid(cls, factors: list[CinFactor]) -> list[CinFactor]:
        check_cin_factors(factors, "factors")
        return factors


# The event's child, under the same name so that the API documents it as before, with its
# date of birth an ISO 8601 string only (the event model read 0 as 1 January 1970) and
# no later than today.
class SteppedDownChild(events.SteppedDownChild):
    date_of_birth: DateOfBirth


class StepDownSubmission(_Request):
    """Children's social care hands a family down to early help."""

    social_care_reference: ShortText
    children: list[SteppedDownChild] = Field(min_length=1)
    reason: Narrative
    social_care_summary: Narrative = Field(description="What social care did with the family.")
    locality: Slug | None = None
    early_help_case_id: UUID | None = Field(
        default=None,
        description="The early help case the family was stepped up from, if any: the new "
        "case then belongs to the same family.",
    )


class NeedOutcomeInput(_Request):
    need_id: UUID
    achieved: StrictBool


class ClosureSubmission(_Request):
    reason: ClosureReason
    reason_detail: Narrative | None = None
    outcomes: list[NeedOutcomeInput] = Field(default_factory=list)

    @field_validator("outcomes")
    @classmethod
    def _each_need_once(cls, outcomes: list[NeedOutcomeInput]) -> list[NeedOutcomeInput]:
        if repeated := duplicates(item.need_id for item in outcomes):
            raise ValueError(f"need_id {repeated[0]} is given more than once")
        return outcomes


# --- the team around the family, consent, overrides, schools ----------------------------


class TeamMemberSubmission(_Request):
    """An organisation joins the team around the family, with what it does on the plan."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "member_id": "brent-health-visiting",
                    "role": "Health visitor for the youngest child; sleep and feeding plan.",
                }
            ]
        }
    )

    member_id: Slug = Field(
        description="A partner's client id, or the id of a provider a panel has commissioned."
    )
    role: ShortText = Field(description="What the organisation does on the plan.")


class TeamMemberRemoval(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Health visiting work on the plan completed."}]}
    )

    reason: Narrative | None = None


def _each_purpose_once(purposes: list[ConsentScope]) -> list[ConsentScope]:
    if repeated := duplicates(purposes):
        raise ValueError(f"{repeated[0]} is given more than once")
    return purposes


class ConsentSubmission(_Request):
    """The family's consent for this case episode; it replaces any consent standing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "given_by": "Leila Hassan",
                    "given_at": "2025-06-09T16:00:00Z",
                    "purposes": ["share_with_partner_agencies", "referrer_feedback"],
                }
            ]
        }
    )

    given_by: Name = Field(description="The parent, carer or young person who consented.")
    given_at: PastDateTime
    purposes: list[ConsentScope] = Field(min_length=1)

    _once = field_validator("purposes")(_each_purpose_once)


class ConsentNarrowing(_Request):
    """The purposes that still stand: fewer than those standing now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "purposes": ["referrer_feedback"],
                    "reason": "Mum no longer wants the GP practice told about the plan.",
                }
            ]
        }
    )

    purposes: list[ConsentScope] = Field(min_length=1)
    reason: Narrative | None = None

    _once = field_validator("purposes")(_each_purpose_once)


class ConsentWithdrawal(_Request):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "Dad does not want agencies told any more."}]}
    )

    reason: Narrative | None = None


class OverrideSubmission(_Request):
    """Sharing without (or beyond) consent because asking would put a child at risk."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reason": "Asking dad for consent would alert him to the domestic abuse "
                    "disclosure and put mum and the children at risk.",
                    "review_date": "2025-07-11",
                }
            ]
        }
    )

    reason: Narrative
    review_date: IsoDate = Field(description="After today; the override lapses after it.")


class OverrideEnding(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"reason": "Mum has moved to a refuge; consent now asked for directly."}]
        }
    )

    reason: Narrative


class ChildSchoolSubmission(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                    "school_id": "harlesden-primary-school",
                }
            ]
        }
    )

    person_id: UUID = Field(description="A child of the case's family.")
    school_id: Slug = Field(description="The client id of a school partner.")


class TeamMemberView(BaseModel):
    member_id: str
    member_kind: events.TeamMemberKind
    name: str | None = Field(description="The partner's name, when the hub knows it.")
    role: str = Field(description="Its role on the plan; `referrer` for a referrer.")
    source: str = Field(
        description="`team`: added by staff; `referral`: the referrer, on the team for "
        "feedback on its referral from the start.",
        examples=["team"],
    )
    added_at: datetime | None
    added_by: Actor | None


class ConsentView(BaseModel):
    status: str = Field(
        description="`given` (from the opening referral or recorded by staff), `narrowed`, "
        "or `withdrawn`.",
        examples=["given"],
    )
    source: str = Field(
        description="`referral`: the consent of the referral that opened this episode; "
        "`recorded`: staff recorded, narrowed or withdrew it.",
        examples=["referral"],
    )
    referral_id: UUID | None = Field(description="The opening referral, for `referral`.")
    given_by: str | None
    given_at: datetime | None
    purposes: list[ConsentScope]
    narrowed_at: datetime | None = None


class OverrideView(BaseModel):
    reason: str
    decided_by: str
    decided_at: datetime
    review_date: date
    stands: bool = Field(description="False once its review date has passed.")


class ChildSchoolView(BaseModel):
    person_id: UUID
    school_id: str
    school_name: str | None


class Recorded(BaseModel):
    """What a command on a case recorded."""

    case_id: UUID
    event_type: str
    event: dict[str, Any]


class LeadProfessional(BaseModel):
    worker_id: str | None
    name: str | None
    email: str | None


class CaseSummary(BaseModel):
    case_id: UUID
    family_id: UUID
    status: str = Field(examples=["open"])
    locality: str | None
    lead_professional: LeadProfessional
    opened_at: datetime | None
    review_due: date | None
    review_overdue: bool
    re_referral: bool


class CaseView(CaseSummary):
    episode: int = Field(description="1 for the first allocation; more after reopening.")
    children: list[dict[str, Any]] = Field(description="The children the referrals named.")
    assessment: dict[str, Any] | None
    package: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    step_up: dict[str, Any] | None
    step_down: dict[str, Any] | None
    closure: dict[str, Any] | None
    earlier_episodes: list[dict[str, Any]]
    services_started: list[dict[str, Any]] = Field(
        description="The services of the package recorded as started in this episode."
    )
    team: list[TeamMemberView] = Field(
        description="The team around the family: organisations staff added, and the "
        "referrers (role `referrer`)."
    )
    consent: ConsentView | None = Field(
        description="The family's consent for this episode; absent when none was ever given."
    )
    safeguarding_override: OverrideView | None
    schools: list[ChildSchoolView] = Field(description="Children's schools staff recorded.")


class CaseList(BaseModel):
    items: list[CaseSummary]


class CaseFilter(StrEnum):
    OVERDUE = "overdue"


class StageTime(BaseModel):
    """Days from one stage of the case to the next, over the cases that reached the later
    stage in the period."""

    cases: int
    median_days: float | None
    p90_days: float | None = Field(
        description="The 90th percentile (linear between the closest ranks): nine cases in "
        "ten took no longer."
    )


class ServiceStartTime(StageTime):
    """The seeds' 4-week measure: from the completed assessment to the day the first service
    of the agreed package actually started (as recorded, not as planned)."""

    within_four_weeks: int = Field(description="Of `cases`, those started within 28 days.")
    within_four_weeks_percent: float | None
    waiting_over_four_weeks_now: int = Field(
        description="Open cases assessed more than 28 days ago with no service started yet "
        "(whatever the period): listed with the late starts by "
        "`GET /v1/reports/performance/outside-four-weeks`."
    )


class ConsultationCounts(BaseModel):
    """The front door's consultations (contacts that are not referrals), authority-wide:
    they have no locality until they become a referral."""

    requested: int = Field(description="Asked in the period.")
    requested_by_organisation_type: dict[str, int]
    advised_by_outcome: dict[str, int] = Field(
        description="Advice recorded in the period: advice_given, signposted, refer."
    )
    referred: int = Field(description="Turned into a referral in the period, as advised.")


class EncompassSchoolMeasures(BaseModel):
    sent: int = Field(description="Notices issued to the school in the period.")
    acknowledged_in_time: int = Field(description="Of those, acknowledged before the deadline.")
    late: int = Field(
        description="Of those, acknowledged after the deadline, or not acknowledged and past it."
    )


class EncompassMeasures(BaseModel):
    """Operation Encompass notices issued in the period, authority-wide."""

    notices_sent: int = Field(description="Notices issued, to a school or not.")
    acknowledged_in_time: int
    late: int
    without_school: int = Field(description="Notices for a child with no known school.")
    by_school: dict[str, EncompassSchoolMeasures] = Field(
        description="By school partner (client id)."
    )


class PerformanceReport(BaseModel):
    locality: str | None
    period_from: date | None
    period_to: date | None
    referrals_by_source: dict[str, int]
    referrals_by_route: dict[str, int]
    referral_to_triage: StageTime
    triage_to_allocation: StageTime
    allocation_to_assessment: StageTime
    assessment_to_service_start: ServiceStartTime
    reviews: int
    reviews_on_time: int
    reviews_on_time_percent: float | None
    reviews_overdue_now: int
    step_ups: int
    step_downs: int
    closures_by_reason: dict[str, int]
    cases_opened: int
    re_referrals: int = Field(
        description="Of `cases_opened`, those opened within 12 months (the configured "
        "re-referral window) of a closure of a case of the same family."
    )
    re_referral_percent: float | None
    consultations: ConsultationCounts
    supporting_families_claimable: int = Field(
        description="Episodes closed in the period that are claimable under the Supporting "
        "Families rules as configured (`GET /v1/returns/supporting-families` lists them)."
    )
    encompass: EncompassMeasures | None = Field(
        default=None,
        description="Operation Encompass notices by school; in authority-wide reports only "
        "(notices belong to schools, not localities).",
    )


class OutsideFourWeeks(BaseModel):
    """A case whose first service started more than 28 days after its assessment, or that
    has waited longer than that with none started."""

    case_id: UUID
    family_id: UUID
    locality: str | None
    lead_professional: LeadProfessional
    assessed_on: date
    service_started_on: date | None = Field(description="Absent while the family waits.")
    days: int = Field(description="From the assessment to the start, or to today if waiting.")


class OutsideFourWeeksList(BaseModel):
    locality: str | None
    period_from: date | None
    period_to: date | None
    items: list[OutsideFourWeeks] = Field(description="The longest first.")


class ServiceStartSubmission(_Request):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provider_id": "brent-family-wellbeing-centres",
                    "service": "Parenting support: Triple P group programme",
                    "started_on": "2025-04-14",
                }
            ]
        }
    )

    provider_id: Slug = Field(description="The provider, as the panel's package names it.")
    service: ShortText = Field(description="The service, as the panel's package names it.")
    started_on: Annotated[IsoDate, NotAfterToday] = Field(
        description="The day the family first received the service; not after today."
    )


class AnnexAList(BaseModel):
    """Ofsted Annex A list 2 (early help): the template's columns, one row per child per
    episode of early help."""

    as_at: date = Field(description="The inspection date the list is for.")
    months: int = Field(description="The look-back period, in calendar months.")
    period_from: date = Field(description="The first day of the look-back period.")
    columns: list[str] = Field(description="The template's headings, in its order.")
    rows: list[dict[str, Any]] = Field(
        description="Each row keyed by the headings; dates as YYYY-MM-DD, blanks as null."
    )


class FamilyClaim(BaseModel):
    family_id: UUID
    case_id: UUID
    status: str = Field(
        description="`eligible` (on the programme, open), `evidence_due` (closed with every "
        "need met, sustaining until `sustained_on`), `claimable`, or `not_claimable`.",
        examples=["claimable"],
    )
    reasons: list[str] = Field(description="Every rule a `not_claimable` episode fails.")
    headline_needs: list[str]
    assessment_completed_at: datetime | None
    plan_agreed_at: datetime | None
    closed_at: datetime | None
    closure_reason: str | None
    sustained_on: date | None


class SupportingFamiliesClaims(BaseModel):
    as_at: date
    min_headline_needs: int = Field(description="The rules as the authority configures them.")
    sustain_months: int
    claims: list[FamilyClaim]


# --- retention and legal holds (issue 16) -----------------------------------------------


class LegalHoldSubmission(_Request):
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="Why the family's records must be kept (a claim, an inquiry, a request "
        "from the courts). Not personal data: a reference, not the family's story.",
        examples=["Litigation hold, legal services ref LS-2026-114"],
    )


class LegalHoldView(BaseModel):
    family_id: UUID
    reason: str
    placed_by: str
    placed_at: datetime


class FamilyFallingDue(BaseModel):
    family_id: UUID
    due: date | None = Field(
        description="The day its case records reach the end of their retention period: the "
        "later of the schedule's years after its last closure and its youngest child's "
        "25th birthday. Absent while a case or referral is open."
    )
    case_ids: list[UUID]
    referral_ids: list[UUID]


class HeldFamily(FamilyFallingDue):
    hold: LegalHoldView


class RetentionDue(BaseModel):
    """What the next retention run would dispose of, and what a legal hold keeps."""

    as_of: date = Field(description="Families due on or before this day are listed as due.")
    due: list[FamilyFallingDue] = Field(
        description="Families whose case records have reached their date and are not held. "
        "Until erasure exists (issue 16 item 3) the nightly job reports them, and disposes "
        "of nothing in them."
    )
    held: list[HeldFamily] = Field(description="Families under legal hold, due or not.")
