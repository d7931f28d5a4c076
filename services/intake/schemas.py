"""What partners send to and receive from the front door."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.contracts.codes import (
    CinFactor,
    ClosureReason,
    IncidentLocation,
    LevelOfNeed,
    MatchField,
    PoliceGrade,
    ReferralSource,
    TriageRoute,
    Urgency,
)
from hub.contracts.common import (
    ChildDetails,
    Concerns,
    Consent,
    HouseholdMemberDetails,
    Narrative,
    PastDateTime,
    Referrer,
    SafeguardingOverride,
    ShortText,
)
from hub.contracts.identifiers import DfeEstablishmentNumber, SchoolUrn, Slug
from hub.contracts.intake import (
    ConsultationAdvice,
    ConsultationAdvised,
    ConsultationRequested,
    ConsultedChild,
    MatchRejected,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
    ReferralWithdrawn,
)
from intake.consultations import ConsultationStatus
from intake.domain import ReferralStatus


class ReferralSubmission(BaseModel):
    """A referral from a partner system (or a family's own request for help)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    key: value
                    for key, value in ReferralReceived.examples()[0].items()
                    if key
                    in {
                        "referral_source",
                        "referrer",
                        "partner_reference",
                        "urgency",
                        "concerns",
                        "consent",
                    }
                }
                | {
                    "children": [
                        {k: v for k, v in child.items() if k != "person_id"}
                        for child in ReferralReceived.examples()[0]["children"]
                    ],
                    "household_members": [
                        {k: v for k, v in member.items() if k != "person_id"}
                        for member in ReferralReceived.examples()[0]["household_members"]
                    ],
                }
            ]
        },
    )

    referral_source: ReferralSource = Field(description="CIN census referral source code.")
    referrer: Referrer | None = Field(
        description="Who is referring; omit only for an anonymous (9) referral."
    )
    partner_reference: ShortText | None = Field(
        default=None, description="Your own reference, quoted back when we tell you the outcome."
    )
    urgency: Urgency
    children: list[ChildDetails] = Field(min_length=1, max_length=20)
    household_members: list[HouseholdMemberDetails] = Field(default_factory=list, max_length=30)
    concerns: Concerns
    consent: Consent | None = None
    safeguarding_override: SafeguardingOverride | None = None
    police_grade: PoliceGrade | None = Field(
        default=None,
        validate_default=True,
        description=(
            "Police notifications (source 6) only, and required for them: high and medium are"
            " triaged; a low one is held on the family's record until concerns accumulate."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.referrer is None) != (self.referral_source is ReferralSource.ANONYMOUS):
            raise ValueError(
                "referrer is required, and must be absent for an anonymous (9) referral"
            )
        if self.consent is None and self.safeguarding_override is None:
            raise ValueError("give consent or a safeguarding_override (or both)")
        return self

    @field_validator("police_grade")
    @classmethod
    def _graded_if_police(cls, value: PoliceGrade | None, info: ValidationInfo) -> object:
        source = info.data.get("referral_source")
        if source is ReferralSource.POLICE and value is None:
            raise ValueError("is required for a police (6) notification")
        if source is not None and source is not ReferralSource.POLICE and value is not None:
            raise ValueError("is only for police (6) notifications")
        return value


class ReferralAccepted(BaseModel):
    """The referral, received. Nothing about the family the hub matched it to: whether the
    hub knew the children before is not the referrer's to learn (issue 14)."""

    referral_id: UUID
    status: ReferralStatus
    received_at: AwareDatetime


class ReferralProgress(StrEnum):
    """Where a referral has got to, as its referrer is told."""

    RECEIVED = "received"
    HELD = "held_for_information"
    TRIAGED = "triaged"
    ALLOCATED = "allocated"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"


class PartnerTriageOutcome(BaseModel):
    """What the front door decided, as the referrer is told it."""

    level_of_need: LevelOfNeed
    route: TriageRoute
    locality: str | None = Field(description="The locality holding the case (early_help only).")
    case_id: UUID | None = Field(
        description="The early help case the referral went to (early_help only)."
    )
    decided_at: datetime


class TriageOutcome(PartnerTriageOutcome):
    """What the front door decided, as staff see it."""

    joins_open_case: bool = Field(
        default=False, description="True when the referral joined the family's open case."
    )


class LeadProfessional(BaseModel):
    """The family's single point of contact in early help."""

    name: str
    role: str
    team: str
    email: str | None
    phone: str | None


class AllocationOutcome(BaseModel):
    allocated_at: datetime
    lead_professional: LeadProfessional


class ClosureOutcome(BaseModel):
    """The early help case the referral went to has closed: when, and the reason's code.

    Never the reason's free text: it is the case worker's, written for the case record.
    """

    closed_at: datetime
    reason: ClosureReason


class WithdrawalOutcome(BaseModel):
    withdrawn_at: datetime
    reason: str


class PoliceNotification(BaseModel):
    """A police notification's grade and what became of it on the family's record."""

    grade: PoliceGrade
    escalated_in: UUID | None = Field(
        default=None,
        description="A held low notification: the later one that raised it for triage with it.",
    )
    escalates_notices: int = Field(
        default=0,
        description="How many earlier held low notifications this one raised for triage.",
    )


class PossibleMatch(BaseModel):
    """A child in the referral who may be someone the hub already knows."""

    match_id: UUID
    person_id: UUID = Field(description="The child in this referral.")
    candidate_person_id: UUID
    candidate_family_id: UUID
    agrees_on: list[MatchField]
    differs_on: list[MatchField]
    status: str = Field(description="pending, confirmed or rejected.")
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None


class Matching(BaseModel):
    """Front-door staff only: how the referral was matched to people the hub knew."""

    matched_existing_family: bool
    re_referral_of_case_id: UUID | None = Field(
        description="The family's open case, or its case closed within the re-referral window."
    )
    possible_matches: list[PossibleMatch]


class PartnerReferralView(BaseModel):
    """What the hub tells a referrer about one referral: where it is and what was decided.

    Nothing about the family beyond the referral: no family id, no word of an open case
    it joined or of other children (issue 14); staff see those (`ReferralView`).
    """

    referral_id: UUID
    status: ReferralProgress = Field(
        description="received (or held_for_information, for a low-graded police notification), "
        "then triaged (allocated once a lead professional took the case, closed once the "
        "case closed), or withdrawn by the referrer before triage."
    )
    received_at: datetime
    urgency: Urgency
    referral_source: ReferralSource
    partner_reference: str | None
    police_notification: PoliceNotification | None = Field(
        default=None, description="Police notifications only."
    )
    triage: PartnerTriageOutcome | None = Field(
        default=None, description="The front door's decision, once made."
    )
    allocation: AllocationOutcome | None = Field(
        default=None, description="Who leads the case, once allocation reports it."
    )
    closure: ClosureOutcome | None = Field(
        default=None, description="When and why the case the referral went to closed."
    )
    withdrawal: WithdrawalOutcome | None = Field(
        default=None, description="When and why the referrer withdrew it."
    )


class ReferralView(PartnerReferralView):
    """A referral as front-door staff see it: with its family and how it was matched."""

    family_id: UUID
    matching: Matching | None = Field(default=None, description="Shown to front-door staff only.")
    triage: TriageOutcome | None = Field(
        default=None, description="The front door's decision, once made."
    )


_TRIAGE_EXAMPLE = ReferralTriaged.examples()[0]


class TriageDecision(BaseModel):
    """The front door's decision on a referral: level of need, route and why."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    key: _TRIAGE_EXAMPLE[key]
                    for key in ("level_of_need", "route", "locality", "rationale")
                }
            ]
        },
    )

    level_of_need: LevelOfNeed = Field(
        description="On this authority's threshold framework; levels it does not use are refused."
    )
    route: TriageRoute
    locality: Slug | None = Field(
        default=None,
        validate_default=True,
        description="The locality that will hold the case: required for early_help, and only then.",
    )
    rationale: Narrative = Field(description="Why: the record of the decision.")

    @field_validator("locality")
    @classmethod
    def _locality_for_early_help(cls, value: str | None, info: ValidationInfo) -> str | None:
        route = info.data.get("route")
        if route is TriageRoute.EARLY_HELP and value is None:
            raise ValueError("locality is required when route is early_help")
        if route is not None and route is not TriageRoute.EARLY_HELP and value is not None:
            raise ValueError("locality is only given when route is early_help")
        return value


class TriageRecorded(BaseModel):
    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    triage: TriageOutcome


class WithdrawalRequest(BaseModel):
    """The referrer takes its referral back before the front door has decided on it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": ReferralWithdrawn.examples()[0]["reason"]}]},
    )

    reason: Narrative = Field(description="Why the referral is withdrawn.")


class WithdrawalRecorded(BaseModel):
    referral_id: UUID
    status: ReferralStatus
    withdrawal: WithdrawalOutcome


class MatchDecision(BaseModel):
    """Why staff rejected a possible match (a confirmation needs no body)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": MatchRejected.examples()[0]["reason"]}]},
    )

    reason: Narrative


class UnlinkRequest(BaseModel):
    """Why a match was wrong: the referral leaves the family it was joined to."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": ReferralUnlinked.examples()[0]["reason"]}]},
    )

    reason: Narrative


class MatchingRecorded(BaseModel):
    """The referral after a match was confirmed, rejected or unlinked."""

    referral_id: UUID
    family_id: UUID = Field(description="The family the referral belongs to now.")
    matching: Matching


class QueueStatus(StrEnum):
    """Which referrals to list."""

    AWAITING_TRIAGE = "awaiting_triage"
    HELD_FOR_INFORMATION = "held_for_information"
    TRIAGED = "triaged"
    WITHDRAWN = "withdrawn"


class PartnerQueueItem(BaseModel):
    """One of the partner's own referrals in a list: no family id (issue 14)."""

    referral_id: UUID
    status: ReferralProgress
    urgency: Urgency
    partner_reference: str | None
    received_at: datetime
    age_seconds: int = Field(description="Seconds since the referral was received.", ge=0)
    decision_deadline: datetime = Field(
        description="When the front door should have decided: received_at plus the deadline "
        "configured for the urgency."
    )
    overdue: bool = Field(
        description="Awaiting triage past the deadline; for a triaged or withdrawn referral, "
        "whether that happened after the deadline. Never for one held for information."
    )
    escalating_concern: bool = Field(
        default=False,
        description="A police notification that raised earlier low ones for triage with it.",
    )


class QueueItem(PartnerQueueItem):
    """A referral in the front door's queue, with its family."""

    family_id: UUID
    unresolved_matches: int | None = Field(
        default=None,
        description="Front-door staff only: possible matches still to confirm or reject.",
    )


class PartnerReferralQueue(BaseModel):
    """One page of the partner's own referrals: most urgent first, then oldest first."""

    status: QueueStatus
    items: list[PartnerQueueItem]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same status) for the next page; null on the last."
    )


class ReferralQueue(PartnerReferralQueue):
    """One page of the front door's queue: most urgent first, then oldest first."""

    items: list[QueueItem]


# --- consultations: contacts that are not referrals (issue 21) ----------------------------


class ConsultationSubmission(BaseModel):
    """A practitioner asks the front door for advice, without referring anyone."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    key: value
                    for key, value in ConsultationRequested.examples()[0].items()
                    if key in {"factors", "question", "children"}
                }
                # The organisation is the token's: the example leaves it out.
                | {
                    "practitioner": {
                        key: value
                        for key, value in ConsultationRequested.examples()[0][
                            "practitioner"
                        ].items()
                        if not key.startswith("organisation_")
                    }
                }
            ]
        },
    )

    practitioner: Referrer = Field(
        description="Who asks; the organisation is the one the bearer token belongs to."
    )
    factors: list[CinFactor] = Field(
        min_length=1, max_length=30, description="What it is about, as CIN factor codes."
    )
    question: Narrative = Field(description="What you ask the front door.")
    children: list[ConsultedChild] = Field(
        default_factory=list,
        max_length=20,
        description="The children, to name the family; leave empty to ask anonymously.",
    )


class ConsultationAccepted(BaseModel):
    consultation_id: UUID
    status: ConsultationStatus
    requested_at: datetime


class AdviceSubmission(BaseModel):
    """The front door's advice on a consultation."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    key: value
                    for key, value in ConsultationAdvised.examples()[0].items()
                    if key in {"outcome", "advice"}
                }
            ]
        },
    )

    outcome: ConsultationAdvice
    advice: Narrative = Field(description="The advice, as given to the practitioner.")


class ConsultationView(BaseModel):
    consultation_id: UUID
    status: ConsultationStatus
    requested_at: datetime
    organisation_id: str | None
    practitioner: Referrer = Field(description="Who asked.")
    factors: list[CinFactor]
    question: str
    anonymous: bool
    children: list[ConsultedChild]
    outcome: ConsultationAdvice | None
    advice: str | None
    advised_at: datetime | None
    advised_by: str | None = Field(description="Front-door staff only; absent for the partner.")
    referral_id: UUID | None = Field(description="The referral it became, if it did.")
    referred_at: datetime | None


class ConsultationList(BaseModel):
    items: list[ConsultationView] = Field(description="Oldest first.")


# --- Operation Encompass ----------------------------------------------------------------


class EncompassChildDetails(ChildDetails):
    """A child of the household, as police record them for Operation Encompass."""

    present: bool = Field(description="Whether the child was present at the incident.")
    voice_of_child: Narrative | None = Field(
        default=None,
        description=(
            "What the child saw, heard or said, whether they were spoken to and with whom:"
            " the school is told this."
        ),
    )
    school_urn: SchoolUrn | None = Field(
        default=None, description="The child's school's unique reference number (six digits)."
    )
    school_dfe_number: DfeEstablishmentNumber | None = Field(
        default=None,
        description="The child's school's DfE establishment number as LAESTAB (seven digits).",
    )


_POLICE_EXAMPLE = {
    "referrer": {
        "organisation_id": "met-police-brent",
        "organisation_type": "police",
        "organisation_name": "Metropolitan Police, Brent",
        "person_name": "PC Dan Whitfield",
        "role": "Operation Encompass single point of contact",
        "email": "encompass.brent@met.police.example.uk",
    },
    "police_reference": "CAD-4471-07MAR25",
    "incident_at": "2025-03-07T21:40:00Z",
    "location_type": "childs_home",
    "domestic_abuse": True,
    "police_grade": "medium",
    "referral_requested": False,
    "concerns": {
        "factors": ["3A"],
        "description": "Police attended a verbal argument between the adults at the home.",
    },
    "safeguarding_override": {
        "reason": "Operation Encompass notification under the statutory duty on police forces.",
        "recorded_by": "PC Dan Whitfield",
        "recorded_at": "2025-03-07T23:00:00Z",
    },
    "children": [
        {
            "given_name": "Amira",
            "family_name": "Hassan",
            "date_of_birth": "2015-06-12",
            "address": {
                "lines": ["Flat 4", "12 Craven Park Road"],
                "town": "London",
                "postcode": "NW10 8SE",
            },
            "present": True,
            "voice_of_child": "Amira heard shouting from upstairs and said she was frightened.",
            "school_urn": "101234",
        },
        {
            "given_name": "Yusuf",
            "family_name": "Hassan",
            "date_of_birth": "2019-02-03",
            "address": {
                "lines": ["Flat 4", "12 Craven Park Road"],
                "town": "London",
                "postcode": "NW10 8SE",
            },
            "present": False,
            "school_dfe_number": "3042002",
        },
    ],
}


class PoliceNotificationSubmission(BaseModel):
    """A police force's notification of an incident it attended where children live or were
    present: a police referral (source 6), and for a domestic abuse incident one
    Operation Encompass notice to each child's school."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_POLICE_EXAMPLE]})

    referrer: Referrer = Field(description="The force's officer or Encompass point of contact.")
    police_reference: ShortText = Field(description="The force's incident reference.")
    incident_at: PastDateTime
    location_type: IncidentLocation
    domestic_abuse: bool = Field(
        description="Only a domestic abuse incident gives Operation Encompass notices."
    )
    police_grade: PoliceGrade = Field(
        description=(
            "The force's grade. Without `referral_requested` the notification is held on the"
            " family's record as a low one, counting towards cumulative concern."
        )
    )
    referral_requested: bool = Field(
        default=False,
        description="True when police ask the front door to triage it as a referral now.",
    )
    urgency: Urgency = Urgency.ROUTINE
    concerns: Concerns
    consent: Consent | None = None
    safeguarding_override: SafeguardingOverride | None = None
    children: list[EncompassChildDetails] = Field(min_length=1, max_length=20)
    household_members: list[HouseholdMemberDetails] = Field(default_factory=list, max_length=30)

    @model_validator(mode="after")
    def _consented_or_overridden(self) -> Self:
        if self.consent is None and self.safeguarding_override is None:
            raise ValueError("give consent or a safeguarding_override (or both)")
        return self


class EncompassNoticeReceipt(BaseModel):
    """One child's notice: in the order the children were given."""

    notice_id: UUID
    due_by: AwareDatetime = Field(description="The start of the next school day.")


class PoliceNotificationAccepted(BaseModel):
    """The notification, received. Nothing about the family or which schools the hub
    found: that is not the notifying force's to learn (issue 14)."""

    referral_id: UUID
    status: ReferralStatus
    received_at: AwareDatetime
    notices: list[EncompassNoticeReceipt]


class NoticeAcknowledged(BaseModel):
    notice_id: UUID
    acknowledged_at: AwareDatetime
    in_time: bool = Field(description="Acknowledged before the notice's deadline.")


class FrontDoorNotice(BaseModel):
    """A notice the front door must act on; the referral holds the child."""

    notice_id: UUID
    referral_id: UUID
    school_id: str | None = Field(description="Absent when no school is known for the child.")
    school_urn: str | None
    issued_at: AwareDatetime
    due_by: AwareDatetime
    alert_reason: str = Field(description="`no_school` or `unacknowledged`.")
    alerted_at: AwareDatetime


class FrontDoorNoticeQueue(BaseModel):
    """Unacknowledged notices the front door was alerted about, the soonest due first."""

    notices: list[FrontDoorNotice]
