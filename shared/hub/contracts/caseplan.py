"""Events the caseplan service publishes on `earlyhelp.caseplan.v1`: assessment to closure."""

from datetime import date
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from hub.contracts.base import EventData
from hub.contracts.codes import (
    CinFactor,
    ClosureReason,
    ConsentScope,
    LabelledCode,
    LevelOfNeed,
    ProgressRating,
    SupportingFamiliesOutcome,
)
from hub.contracts.common import (
    Actor,
    Name,
    Narrative,
    PastDateTime,
    ShortText,
    SocialCareContact,
    ValueObject,
    check_cin_factors,
    duplicates,
)
from hub.contracts.identifiers import NhsNumber, Slug, UkPostcode

_FAMILY_ID = "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90"
_CASE_ID = "a3d9e6b4-1c2f-4e8a-b7d5-6f0c9e2a1b34"
_NEED_IDS = (
    "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a801",
    "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a802",
    "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a803",
)


def _check_each_need_once(need_ids: list[UUID], field_name: str) -> None:
    if repeated := duplicates(need_ids):
        raise ValueError(f"{field_name} mentions need_id {repeated[0]} more than once")


class CaseplanEvent(EventData):
    producer: ClassVar[str] = "caseplan"

    case_id: UUID

    def subject(self) -> str:
        return str(self.case_id)


class IdentifiedNeed(ValueObject):
    need_id: UUID
    outcome: SupportingFamiliesOutcome
    description: Narrative
    person_id: UUID | None = Field(
        default=None, description="The family member the need is about; absent for the family."
    )


class AssessmentDomain(LabelledCode):
    """The three sides of the assessment framework triangle."""

    CHILD_DEVELOPMENT = "child_development", "The child's developmental needs"
    PARENTING_CAPACITY = "parenting_capacity", "Parenting capacity"
    FAMILY_AND_ENVIRONMENT = "family_and_environment", "Family and environmental factors"


class AssessedRole(LabelledCode):
    """Who in the family a part of the assessment is about."""

    CHILD = "child", "A child of the family"
    PARENT_CARER = "parent_carer", "A parent or carer"


class DomainFinding(ValueObject):
    domain: AssessmentDomain
    strengths: Narrative
    needs: Narrative


class PersonAssessment(ValueObject):
    """The strengths and needs of one child or parent/carer, domain by domain."""

    person_id: UUID | None = Field(
        default=None, description="The hub's id of the person, when the referral gave one."
    )
    role: AssessedRole
    name: Name
    findings: tuple[DomainFinding, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_domain_once(self) -> Self:
        if repeated := duplicates([finding.domain for finding in self.findings]):
            raise ValueError(f"findings repeat the domain {repeated[0]}")
        return self


class FamilyViews(ValueObject):
    child: Narrative = Field(description="The views of the child or children, in their words.")
    family: Narrative = Field(description="The views of the parents or carers.")


class AssessmentCompleted(CaseplanEvent):
    """A whole-family early help assessment was completed."""

    event_type: ClassVar[str] = "earlyhelp.assessment.completed.v1"
    schema_version: ClassVar[int] = 1

    assessment_id: UUID
    completed_at: AwareDatetime
    completed_by: Actor
    factors: tuple[CinFactor, ...] = Field(min_length=1)
    needs: tuple[IdentifiedNeed, ...] = ()
    recommended_level_of_need: LevelOfNeed
    people: tuple[PersonAssessment, ...] = Field(
        default=(), description="Each child's and parent/carer's strengths and needs by domain."
    )
    views: FamilyViews | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_cin_factors(self.factors, "factors")
        _check_each_need_once([need.need_id for need in self.needs], "needs")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "assessment_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "completed_at": "2025-03-24T16:30:00Z",
                    "completed_by": "samira.okafor@brent.example.gov.uk",
                    "factors": ["3B", "4B"],
                    "needs": [
                        {
                            "need_id": _NEED_IDS[0],
                            "outcome": "good_education",
                            "description": "Amira's attendance is 82%; target above 95%.",
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                        },
                        {
                            "need_id": _NEED_IDS[1],
                            "outcome": "improved_mental_and_physical_health",
                            "description": "Leila has low mood and is not receiving support.",
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f603",
                        },
                        {
                            "need_id": _NEED_IDS[2],
                            "outcome": "improved_family_relationships",
                            "description": "Conflict at home since the separation upsets both"
                            " children; routines have broken down.",
                        },
                    ],
                    "recommended_level_of_need": "early_help",
                    "people": [
                        {
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                            "role": "child",
                            "name": "Amira Hassan",
                            "findings": [
                                {
                                    "domain": "child_development",
                                    "strengths": "Bright, enjoys reading and football.",
                                    "needs": "Attendance 82%; late most Mondays.",
                                }
                            ],
                        },
                        {
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f603",
                            "role": "parent_carer",
                            "name": "Leila Hassan",
                            "findings": [
                                {
                                    "domain": "parenting_capacity",
                                    "strengths": "Warm and committed to the children.",
                                    "needs": "Low mood makes mornings hard.",
                                }
                            ],
                        },
                    ],
                    "views": {
                        "child": "Amira wants Mum to be happier and to play for the school team.",
                        "family": "Leila wants help with routines and someone to talk to.",
                    },
                }
            ]
        }
    )


class PlanActionAdded(CaseplanEvent):
    """An action was added to the family plan: what, who, by when."""

    event_type: ClassVar[str] = "earlyhelp.plan.action_added.v1"
    schema_version: ClassVar[int] = 1

    action_id: UUID
    need_id: UUID | None = Field(default=None, description="The need the action works on.")
    what: Narrative
    who: ShortText = Field(description="The person or agency who will do it.")
    by_when: date
    added_at: AwareDatetime
    added_by: Actor

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "action_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a81",
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "need_id": _NEED_IDS[0],
                    "what": "Morning routine chart and a weekly attendance check-in.",
                    "who": "Harlesden Primary School attendance officer",
                    "by_when": "2025-05-01",
                    "added_at": "2025-04-03T10:00:00Z",
                    "added_by": "samira-okafor",
                }
            ]
        }
    )


class PlanOutcomeAgreed(CaseplanEvent):
    """The outcome the plan aims for on one identified need (a later one replaces it)."""

    event_type: ClassVar[str] = "earlyhelp.plan.outcome_agreed.v1"
    schema_version: ClassVar[int] = 1

    need_id: UUID
    outcome: SupportingFamiliesOutcome
    statement: Narrative = Field(description="What will be different for the family.")
    measure: ShortText | None = Field(default=None, description="How progress will be seen.")
    agreed_at: AwareDatetime
    agreed_by: Actor

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "need_id": _NEED_IDS[0],
                    "outcome": "good_education",
                    "statement": "Amira attends school every day and on time.",
                    "measure": "Attendance above 95% over a half term",
                    "agreed_at": "2025-04-03T10:05:00Z",
                    "agreed_by": "samira-okafor",
                }
            ]
        }
    )


class NeedProgress(ValueObject):
    need_id: UUID
    rating: ProgressRating
    note: Narrative


class PlanReviewed(CaseplanEvent):
    """The family plan was reviewed with the family and the agencies around it."""

    event_type: ClassVar[str] = "earlyhelp.plan.reviewed.v1"
    schema_version: ClassVar[int] = 1

    review_id: UUID
    reviewed_at: AwareDatetime
    reviewed_by: Actor
    progress: tuple[NeedProgress, ...] = Field(min_length=1)
    next_review_date: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_each_need_once([item.need_id for item in self.progress], "progress")
        if self.next_review_date <= self.reviewed_at.date():
            raise ValueError("next_review_date must be after the day of reviewed_at")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "review_id": "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f70",
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "reviewed_at": "2025-07-01T15:00:00Z",
                    "reviewed_by": "samira.okafor@brent.example.gov.uk",
                    "progress": [
                        {
                            "need_id": _NEED_IDS[0],
                            "rating": "improved",
                            "note": "Attendance 93% this half term.",
                        },
                        {
                            "need_id": _NEED_IDS[1],
                            "rating": "improved",
                            "note": "Attending talking therapies weekly.",
                        },
                        {
                            "need_id": _NEED_IDS[2],
                            "rating": "same",
                            "note": "Parenting group finished; bedtime routine still a struggle.",
                        },
                    ],
                    "next_review_date": "2025-10-01",
                }
            ]
        }
    )


class CaseSteppedUp(CaseplanEvent):
    """Risk rose above the threshold and the case went to statutory social care."""

    event_type: ClassVar[str] = "earlyhelp.case.stepped_up.v1"
    schema_version: ClassVar[int] = 1

    stepped_up_at: AwareDatetime
    reason: Narrative
    factors: tuple[CinFactor, ...] = Field(min_length=1)
    social_care_contact: SocialCareContact
    decided_by: Actor

    @model_validator(mode="after")
    def _factors_valid(self) -> Self:
        check_cin_factors(self.factors, "factors")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "stepped_up_at": "2025-08-12T13:20:00Z",
                    "reason": "Police notification of a domestic abuse incident with the children"
                    " present; ex-partner has returned to the address.",
                    "factors": ["3A", "3B"],
                    "social_care_contact": {
                        "name": "Chris Doherty",
                        "team": "Brent MASH",
                        "email": "mash@brent.example.gov.uk",
                        "phone": "020 7946 0900",
                    },
                    "decided_by": "team.manager.harlesden@brent.example.gov.uk",
                }
            ]
        }
    )


class SteppedDownChild(ValueObject):
    person_id: UUID
    given_name: Name
    family_name: Name
    date_of_birth: date
    postcode: UkPostcode
    nhs_number: NhsNumber | None = None


class CaseSteppedDown(CaseplanEvent):
    """Social care stepped a family down to early help; `case_id` is the early help case opened."""

    event_type: ClassVar[str] = "earlyhelp.case.stepped_down.v1"
    schema_version: ClassVar[int] = 1

    social_care_reference: ShortText
    stepped_down_at: AwareDatetime
    children: tuple[SteppedDownChild, ...] = Field(min_length=1)
    reason: Narrative
    social_care_summary: Narrative
    locality: Slug | None = Field(
        default=None, description="Locality social care suggested, if any; allocation decides."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
                    "family_id": "8d7c6b5a-4e3f-4a2b-9c1d-0e9f8a7b6c5d",
                    "social_care_reference": "NT-CSC-2024-08812",
                    "stepped_down_at": "2025-05-19T10:45:00Z",
                    "children": [
                        {
                            "person_id": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
                            "given_name": "Kai",
                            "family_name": "Robson",
                            "date_of_birth": "2012-09-30",
                            "postcode": "NE28 7TH",
                            "nhs_number": "9990000034",
                        }
                    ],
                    "reason": "Child in need plan closed: risks reduced, family wants support to"
                    " continue.",
                    "social_care_summary": "Section 17 involvement since October 2024 after"
                    " concerns about neglect; home conditions and school attendance now good."
                    " Dad is in recovery and engaging with substance misuse services.",
                    "locality": "north-tyneside-howdon-and-wallsend",
                }
            ]
        }
    )


class NeedOutcome(ValueObject):
    need_id: UUID
    outcome: SupportingFamiliesOutcome
    achieved: bool


class CaseClosed(CaseplanEvent):
    """The early help case closed, with its reason and the outcome on every need."""

    event_type: ClassVar[str] = "earlyhelp.case.closed.v1"
    schema_version: ClassVar[int] = 1

    closed_at: AwareDatetime
    closed_by: Actor
    reason: ClosureReason
    reason_detail: Narrative | None = Field(
        default=None, description="Free-text explanation; required when reason is other."
    )
    outcomes: tuple[NeedOutcome, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.reason is ClosureReason.OTHER and self.reason_detail is None:
            raise ValueError("reason_detail is required when reason is other")
        _check_each_need_once([item.need_id for item in self.outcomes], "outcomes")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "closed_at": "2025-12-15T12:00:00Z",
                    "closed_by": "samira.okafor@brent.example.gov.uk",
                    "reason": "needs_met",
                    "outcomes": [
                        {"need_id": _NEED_IDS[0], "outcome": "good_education", "achieved": True},
                        {
                            "need_id": _NEED_IDS[1],
                            "outcome": "improved_mental_and_physical_health",
                            "achieved": True,
                        },
                        {
                            "need_id": _NEED_IDS[2],
                            "outcome": "improved_family_relationships",
                            "achieved": True,
                        },
                    ],
                }
            ]
        }
    )


class TeamMemberKind(LabelledCode):
    """Where a team member organisation is known from."""

    PARTNER = "partner", "A partner organisation with an identity on the hub"
    PROVIDER = "provider", "A service provider from allocation's registry"


class TeamMemberAdded(CaseplanEvent):
    """An organisation joined the team around the family for this case.

    Restricted case detail may reach a member only while it is a member and the case's
    consent (or a live safeguarding override) covers sharing with partner agencies.
    """

    event_type: ClassVar[str] = "earlyhelp.case.team_member_added.v1"
    schema_version: ClassVar[int] = 1

    member_id: Slug = Field(
        description="The organisation: a partner's client id, or a registry provider's id."
    )
    member_kind: TeamMemberKind
    role: ShortText = Field(description="What the organisation does on the plan.")
    added_at: AwareDatetime
    added_by: Actor

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "member_id": "health-visiting-brent",
                    "member_kind": "partner",
                    "role": "Health visitor for the youngest child; sleep and feeding plan.",
                    "added_at": "2025-06-10T09:30:00Z",
                    "added_by": "samira.okafor@brent.example.gov.uk",
                }
            ]
        }
    )


class TeamMemberRemoved(CaseplanEvent):
    """An organisation left the team around the family; nothing restricted reaches it after."""

    event_type: ClassVar[str] = "earlyhelp.case.team_member_removed.v1"
    schema_version: ClassVar[int] = 1

    member_id: Slug
    removed_at: AwareDatetime
    removed_by: Actor
    reason: Narrative | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "member_id": "health-visiting-brent",
                    "removed_at": "2025-09-01T11:00:00Z",
                    "removed_by": "samira.okafor@brent.example.gov.uk",
                    "reason": "Health visiting work on the plan completed.",
                }
            ]
        }
    )


def _check_each_purpose_once(purposes: tuple[ConsentScope, ...]) -> None:
    if repeated := duplicates(purposes):
        raise ValueError(f"purposes repeats {', '.join(map(str, repeated))}")


class ConsentRecorded(CaseplanEvent):
    """The family's consent for this case episode, as it now stands (it replaces any earlier).

    A new case of the same family starts without it.
    """

    event_type: ClassVar[str] = "earlyhelp.case.consent_recorded.v1"
    schema_version: ClassVar[int] = 1

    given_by: Name = Field(description="The parent, carer or young person who consented.")
    given_at: PastDateTime
    purposes: tuple[ConsentScope, ...] = Field(min_length=1)
    recorded_at: AwareDatetime
    recorded_by: Actor

    @model_validator(mode="after")
    def _each_purpose_once(self) -> Self:
        _check_each_purpose_once(self.purposes)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "given_by": "Amira Hassan",
                    "given_at": "2025-06-09T16:00:00Z",
                    "purposes": [
                        "share_with_partner_agencies",
                        "referrer_feedback",
                        "panel_discussion",
                    ],
                    "recorded_at": "2025-06-10T09:00:00Z",
                    "recorded_by": "samira.okafor@brent.example.gov.uk",
                }
            ]
        }
    )


class ConsentNarrowed(CaseplanEvent):
    """The family withdrew consent for some purposes; `purposes` is what still stands."""

    event_type: ClassVar[str] = "earlyhelp.case.consent_narrowed.v1"
    schema_version: ClassVar[int] = 1

    purposes: tuple[ConsentScope, ...] = Field(min_length=1)
    narrowed_at: AwareDatetime
    narrowed_by: Actor
    reason: Narrative | None = None

    @model_validator(mode="after")
    def _each_purpose_once(self) -> Self:
        _check_each_purpose_once(self.purposes)
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "purposes": ["referrer_feedback"],
                    "narrowed_at": "2025-07-02T10:00:00Z",
                    "narrowed_by": "samira.okafor@brent.example.gov.uk",
                    "reason": "Mum no longer wants the GP practice told about the plan.",
                }
            ]
        }
    )


class ConsentWithdrawn(CaseplanEvent):
    """The family withdrew all consent for this case; sharing stops unless an override stands."""

    event_type: ClassVar[str] = "earlyhelp.case.consent_withdrawn.v1"
    schema_version: ClassVar[int] = 1

    withdrawn_at: AwareDatetime
    withdrawn_by: Actor
    reason: Narrative | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "withdrawn_at": "2025-07-20T14:00:00Z",
                    "withdrawn_by": "samira.okafor@brent.example.gov.uk",
                }
            ]
        }
    )


class SafeguardingOverrideRecorded(CaseplanEvent):
    """Sharing without (or beyond) consent because asking would put a child at risk."""

    event_type: ClassVar[str] = "earlyhelp.case.safeguarding_override_recorded.v1"
    schema_version: ClassVar[int] = 1

    reason: Narrative
    decided_by: Actor
    decided_at: AwareDatetime
    review_date: date = Field(description="The override lapses after this day unless renewed.")

    @model_validator(mode="after")
    def _reviewed_later(self) -> Self:
        if self.review_date <= self.decided_at.date():
            raise ValueError("review_date must be after the day of decided_at")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "reason": "Asking dad for consent would alert him to the domestic abuse"
                    " disclosure and put mum and the children at risk.",
                    "decided_by": "team.manager.harlesden@brent.example.gov.uk",
                    "decided_at": "2025-06-11T12:00:00Z",
                    "review_date": "2025-07-11",
                }
            ]
        }
    )


class SafeguardingOverrideEnded(CaseplanEvent):
    """The override no longer stands (reviewed and ended before its review date)."""

    event_type: ClassVar[str] = "earlyhelp.case.safeguarding_override_ended.v1"
    schema_version: ClassVar[int] = 1

    ended_at: AwareDatetime
    ended_by: Actor
    reason: Narrative

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "ended_at": "2025-07-01T10:00:00Z",
                    "ended_by": "team.manager.harlesden@brent.example.gov.uk",
                    "reason": "Mum has moved to a refuge; consent now asked for directly.",
                }
            ]
        }
    )


class ChildSchoolRecorded(CaseplanEvent):
    """Staff recorded which school a child of the case attends: the only way a school
    partner becomes that child's school for sharing, besides referring the child itself."""

    event_type: ClassVar[str] = "earlyhelp.case.child_school_recorded.v1"
    schema_version: ClassVar[int] = 1

    person_id: UUID = Field(description="The child.")
    school_id: Slug = Field(description="The school partner's client id.")
    recorded_at: AwareDatetime
    recorded_by: Actor

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "person_id": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
                    "school_id": "st-marys-primary",
                    "recorded_at": "2025-06-10T09:45:00Z",
                    "recorded_by": "samira.okafor@brent.example.gov.uk",
                }
            ]
        }
    )


class ServiceStarted(CaseplanEvent):
    """A service of the package the panel agreed actually started for the family: the
    moment the 4-week measure (assessment to the start of a service) counts to, as
    opposed to the start date the panel planned."""

    event_type: ClassVar[str] = "earlyhelp.case.service_started.v1"
    schema_version: ClassVar[int] = 1

    provider_id: Slug = Field(description="The provider of the service, as the package names it.")
    service: ShortText = Field(description="The service, as the package names it.")
    started_on: date = Field(description="The day the family first received the service.")
    recorded_at: AwareDatetime
    recorded_by: Actor

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE_ID,
                    "family_id": _FAMILY_ID,
                    "provider_id": "brent-family-wellbeing-centres",
                    "service": "Parenting support: Triple P group programme",
                    "started_on": "2025-04-14",
                    "recorded_at": "2025-04-15T09:30:00Z",
                    "recorded_by": "samira.okafor@brent.example.gov.uk",
                }
            ]
        }
    )
