"""Events the intake service (the front door) publishes on `earlyhelp.intake.v1`."""

from typing import ClassVar, Literal, Self
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from hub.contracts.base import EventData
from hub.contracts.codes import (
    CinFactor,
    EncompassAlertReason,
    IncidentLocation,
    LabelledCode,
    LevelOfNeed,
    MatchField,
    PoliceGrade,
    ReferralSource,
    TriageRoute,
    Urgency,
)
from hub.contracts.common import (
    Actor,
    Child,
    Concerns,
    Consent,
    DateOfBirth,
    HouseholdMember,
    Name,
    Narrative,
    Referrer,
    SafeguardingOverride,
    ShortText,
    ValueObject,
    duplicates,
)
from hub.contracts.identifiers import SchoolUrn, Slug


class IntakeEvent(EventData):
    producer: ClassVar[str] = "intake"

    referral_id: UUID

    def subject(self) -> str:
        return str(self.referral_id)


class ReferralReceived(IntakeEvent):
    """A referral (or a family's own request) arrived at the front door."""

    event_type: ClassVar[str] = "earlyhelp.referral.received.v1"
    schema_version: ClassVar[int] = 1

    received_at: AwareDatetime
    referral_source: ReferralSource
    referrer: Referrer | None = Field(description="Absent exactly when the source is 9, anonymous.")
    partner_reference: ShortText | None = Field(
        default=None, description="The referrer's own reference, quoted back in feedback."
    )
    urgency: Urgency
    children: tuple[Child, ...] = Field(min_length=1)
    household_members: tuple[HouseholdMember, ...] = ()
    concerns: Concerns
    consent: Consent | None = None
    safeguarding_override: SafeguardingOverride | None = Field(
        default=None, description="Why the referral was shared without consent, when it was."
    )
    re_referral_of_case_id: UUID | None = Field(
        default=None, description="An earlier case for this family that this referral repeats."
    )
    matched_existing_family: bool = Field(
        description="True when family_id is a family the hub already knew; false for a new one."
    )
    police_grade: PoliceGrade | None = Field(
        default=None, description="The grade of a police notification (source 6 only)."
    )
    held_for_information: bool = Field(
        default=False,
        description=(
            "True for a low-graded police notification that the front door holds on the"
            " family's record instead of triaging, until concerns accumulate."
        ),
    )
    escalates_notices: tuple[UUID, ...] = Field(
        default=(),
        description=(
            "Earlier low-graded notifications for the family, within the window, that this"
            " one raises for triage together as an escalating concern."
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
        if self.police_grade is not None and self.referral_source is not ReferralSource.POLICE:
            raise ValueError("police_grade is only for police (6) notifications")
        low = self.police_grade is PoliceGrade.LOW
        if self.held_for_information and not low:
            raise ValueError("only a low-graded police notification is held for information")
        if self.escalates_notices and (not low or self.held_for_information):
            raise ValueError("escalates_notices belongs to a low notification raised for triage")
        people = [p.person_id for p in (*self.children, *self.household_members)]
        if repeated := duplicates(people):
            raise ValueError(f"person_id {repeated[0]} appears more than once")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "received_at": "2025-03-03T09:42:00Z",
                    "referral_source": "2A",
                    "referrer": {
                        "organisation_id": "harlesden-primary-school",
                        "organisation_type": "school",
                        "organisation_name": "Harlesden Primary School",
                        "person_name": "Jo Adeyemi",
                        "role": "Designated safeguarding lead",
                        "email": "jo.adeyemi@harlesden-primary.example.org",
                        "phone": "020 7946 0314",
                    },
                    "partner_reference": "HPS-2025-0117",
                    "urgency": "routine",
                    "children": [
                        {
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                            "given_name": "Amira",
                            "family_name": "Hassan",
                            "date_of_birth": "2015-06-12",
                            "nhs_number": "9990000018",
                            "upn": "G304200119123",
                            "address": {
                                "lines": ["Flat 4", "12 Craven Park Road"],
                                "town": "London",
                                "postcode": "NW10 8SE",
                            },
                        },
                        {
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f602",
                            "given_name": "Yusuf",
                            "family_name": "Hassan",
                            "date_of_birth": "2019-02-03",
                            "nhs_number": "9990000026",
                            "address": {
                                "lines": ["Flat 4", "12 Craven Park Road"],
                                "town": "London",
                                "postcode": "NW10 8SE",
                            },
                        },
                    ],
                    "household_members": [
                        {
                            "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f603",
                            "given_name": "Leila",
                            "family_name": "Hassan",
                            "relationship": "mother",
                            "date_of_birth": "1988-11-20",
                            "parental_responsibility": True,
                        }
                    ],
                    "concerns": {
                        "factors": ["3B", "4B"],
                        "description": (
                            "Amira's attendance has fallen to 82% this term and she has told her"
                            " teacher about arguments at home. Mum says she is struggling with low"
                            " mood since her partner left and would like some help."
                        ),
                    },
                    "consent": {
                        "given_by": "Leila Hassan",
                        "given_at": "2025-02-28T15:30:00Z",
                        "covers": [
                            "early_help_assessment",
                            "share_with_partner_agencies",
                            "referrer_feedback",
                        ],
                    },
                    "matched_existing_family": False,
                }
            ]
        }
    )


class ReferralTriaged(IntakeEvent):
    """The front door decided the level of need and where the referral goes."""

    event_type: ClassVar[str] = "earlyhelp.referral.triaged.v1"
    schema_version: ClassVar[int] = 1

    level_of_need: LevelOfNeed
    route: TriageRoute
    locality: Slug | None = Field(
        default=None, description="Locality that holds the case; required for the early_help route."
    )
    case_id: UUID | None = Field(
        default=None, description="The early help case opened or joined; only for early_help."
    )
    joins_open_case: bool = Field(
        default=False,
        description="True when the family already had an open case and the referral joins it.",
    )
    rationale: Narrative
    decided_by: Actor
    decided_at: AwareDatetime

    @model_validator(mode="after")
    def _route_fields(self) -> Self:
        early_help = self.route is TriageRoute.EARLY_HELP
        if early_help and self.locality is None:
            raise ValueError("locality is required when route is early_help")
        if early_help != (self.case_id is not None):
            raise ValueError("case_id is required when route is early_help, and only then")
        if self.joins_open_case and not early_help:
            raise ValueError("joins_open_case is only possible when route is early_help")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "level_of_need": "early_help",
                    "route": "early_help",
                    "locality": "brent-harlesden",
                    "case_id": "a3d9e6b4-1c2f-4e8a-b7d5-6f0c9e2a1b34",
                    "joins_open_case": False,
                    "rationale": (
                        "Needs across education, parental mental health and family relationships;"
                        " no open case and no current safeguarding threshold met. Mum consents to"
                        " a whole-family early help assessment."
                    ),
                    "decided_by": "front.door@brent.example.gov.uk",
                    "decided_at": "2025-03-04T14:10:00Z",
                }
            ]
        }
    )


class ReferralWithdrawn(IntakeEvent):
    """The referrer withdrew the referral before the front door decided on it."""

    event_type: ClassVar[str] = "earlyhelp.referral.withdrawn.v1"
    schema_version: ClassVar[int] = 1

    withdrawn_at: AwareDatetime
    withdrawn_by: Actor = Field(description="The partner system (client id) that withdrew it.")
    reason: Narrative

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "withdrawn_at": "2025-03-03T16:05:00Z",
                    "withdrawn_by": "harlesden-primary-school",
                    "reason": (
                        "Sent in error: the family was already referred by the health visitor"
                        " last week and mum has asked us not to duplicate it."
                    ),
                }
            ]
        }
    )


class PossibleMatchFound(IntakeEvent):
    """A child in the referral may be someone the hub already knows, in another family.

    The front door was not sure enough to join them: staff confirm or reject it.
    """

    event_type: ClassVar[str] = "earlyhelp.referral.possible_match_found.v1"
    schema_version: ClassVar[int] = 1

    match_id: UUID
    person_id: UUID = Field(description="The child in this referral.")
    candidate_person_id: UUID = Field(description="The person the hub already knew.")
    candidate_family_id: UUID
    agrees_on: tuple[MatchField, ...] = Field(min_length=1)
    differs_on: tuple[MatchField, ...] = Field(
        default=(), description="Details both records hold that are not the same."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "match_id": "6d1f0e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                    "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                    "candidate_person_id": "e4f5a6b7-c8d9-4e0f-9a1b-2c3d4e5f6a7b",
                    "candidate_family_id": "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f",
                    "agrees_on": ["given_name", "family_name", "date_of_birth"],
                    "differs_on": ["postcode"],
                }
            ]
        }
    )


class MatchConfirmed(IntakeEvent):
    """Staff confirmed a possible match: the referral joins the family the hub knew.

    `family_id` is that family; the child's person id becomes the known person's.
    """

    event_type: ClassVar[str] = "earlyhelp.referral.match_confirmed.v1"
    schema_version: ClassVar[int] = 1

    match_id: UUID
    previous_family_id: UUID
    person_id: UUID = Field(description="The child's id in the referral until now.")
    matched_person_id: UUID = Field(description="The child's id from now on.")
    re_referral_of_case_id: UUID | None = Field(
        default=None, description="The family's open or recently closed case, if it has one."
    )
    confirmed_by: Actor
    confirmed_at: AwareDatetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f",
                    "previous_family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "match_id": "6d1f0e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                    "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                    "matched_person_id": "e4f5a6b7-c8d9-4e0f-9a1b-2c3d4e5f6a7b",
                    "confirmed_by": "front-door-demo",
                    "confirmed_at": "2025-03-03T11:20:00Z",
                }
            ]
        }
    )


class MatchRejected(IntakeEvent):
    """Staff decided a possible match is someone else: the referral keeps its own family."""

    event_type: ClassVar[str] = "earlyhelp.referral.match_rejected.v1"
    schema_version: ClassVar[int] = 1

    match_id: UUID
    reason: Narrative
    rejected_by: Actor
    rejected_at: AwareDatetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "match_id": "6d1f0e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
                    "reason": "Different child: school confirms a different mother and address.",
                    "rejected_by": "front-door-demo",
                    "rejected_at": "2025-03-03T11:20:00Z",
                }
            ]
        }
    )


class PersonReidentified(ValueObject):
    previous_person_id: UUID
    person_id: UUID


class ReferralUnlinked(IntakeEvent):
    """A match (automatic or confirmed) was wrong: the referral leaves that family.

    Its people get new ids in a new family (`family_id`); `previous_family_id` is
    the family it was wrongly joined to, which keeps everything else it holds.
    """

    event_type: ClassVar[str] = "earlyhelp.referral.unlinked.v1"
    schema_version: ClassVar[int] = 1

    previous_family_id: UUID
    people: tuple[PersonReidentified, ...] = Field(min_length=1)
    reason: Narrative
    unlinked_by: Actor
    unlinked_at: AwareDatetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "family_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                    "previous_family_id": "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f",
                    "people": [
                        {
                            "previous_person_id": "e4f5a6b7-c8d9-4e0f-9a1b-2c3d4e5f6a7b",
                            "person_id": "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
                        }
                    ],
                    "reason": "Twins with the same name and date of birth in another family.",
                    "unlinked_by": "front-door-demo",
                    "unlinked_at": "2025-03-05T09:00:00Z",
                }
            ]
        }
    )


# --- consultations: contacts that are not referrals (issue 21) -------------------------

_CONSULTATION_ID = "6d7e8f90-1a2b-4c3d-8e4f-5a6b7c8d9e01"
_CONSULTATION_FAMILY_ID = "7e8f9012-3b4c-4d5e-9f60-718293a4b5c6"


class ConsultationEvent(EventData):
    """An event of a consultation: a practitioner asking the front door for advice about a
    child or family without referring them. Its `family_id` is the consultation's own (a
    named family is not matched to the families the hub knows until a referral is made)."""

    producer: ClassVar[str] = "intake"

    consultation_id: UUID

    def subject(self) -> str:
        return str(self.consultation_id)


class ConsultedChild(ValueObject):
    """A child a named consultation is about: enough for the front door to look them up."""

    given_name: Name
    family_name: Name
    date_of_birth: DateOfBirth | None = None


class ConsultationAdvice(LabelledCode):
    """What the front door advised."""

    ADVICE_GIVEN = "advice_given", "Advice given: the practitioner carries on without a referral"
    SIGNPOSTED = "signposted", "Signposted to a universal or community service"
    REFER = "refer", "Refer: the needs call for early help or social care"


class ConsultationRequested(ConsultationEvent):
    """A practitioner asked the front door for advice (a consultation, not a referral)."""

    event_type: ClassVar[str] = "earlyhelp.consultation.requested.v1"
    schema_version: ClassVar[int] = 1

    requested_at: AwareDatetime
    practitioner: Referrer = Field(description="Who asks, and their organisation.")
    factors: tuple[CinFactor, ...] = Field(
        min_length=1, description="What it is about, as CIN factor codes."
    )
    question: Narrative = Field(description="What the practitioner asks.")
    anonymous: bool = Field(description="True when the family is not named.")
    children: tuple[ConsultedChild, ...] = Field(
        default=(), description="The children, when the family is named; none when anonymous."
    )

    @model_validator(mode="after")
    def _named_or_not(self) -> Self:
        if self.anonymous and self.children:
            raise ValueError("an anonymous consultation names no children")
        if not self.anonymous and not self.children:
            raise ValueError("a named consultation names at least one child")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consultation_id": _CONSULTATION_ID,
                    "family_id": _CONSULTATION_FAMILY_ID,
                    "requested_at": "2025-02-20T10:15:00Z",
                    "practitioner": {
                        "organisation_id": "harlesden-primary-school",
                        "organisation_type": "school",
                        "organisation_name": "Harlesden Primary School",
                        "person_name": "Jo Adeyemi",
                        "role": "Designated safeguarding lead",
                        "email": "jo.adeyemi@harlesden-primary.example.org",
                    },
                    "factors": ["4B"],
                    "question": "A parent told us she is struggling with low mood; is this "
                    "early help, or should the school support her through the GP?",
                    "anonymous": True,
                    "children": [],
                }
            ]
        }
    )


class ConsultationAdvised(ConsultationEvent):
    """The front door recorded the advice it gave on a consultation."""

    event_type: ClassVar[str] = "earlyhelp.consultation.advice_recorded.v1"
    schema_version: ClassVar[int] = 1

    advised_at: AwareDatetime
    advised_by: Actor
    outcome: ConsultationAdvice
    advice: Narrative

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consultation_id": _CONSULTATION_ID,
                    "family_id": _CONSULTATION_FAMILY_ID,
                    "advised_at": "2025-02-20T14:00:00Z",
                    "advised_by": "front-door-demo",
                    "outcome": "refer",
                    "advice": "With the attendance drop as well, refer for an early help "
                    "assessment, with mum's consent.",
                }
            ]
        }
    )


class ConsultationReferred(ConsultationEvent):
    """The practitioner referred the family the consultation was about, as advised: the
    referral (`referral_id`) carries on from here."""

    event_type: ClassVar[str] = "earlyhelp.consultation.referred.v1"
    schema_version: ClassVar[int] = 1

    referral_id: UUID
    referred_at: AwareDatetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consultation_id": _CONSULTATION_ID,
                    "family_id": _CONSULTATION_FAMILY_ID,
                    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
                    "referred_at": "2025-02-21T09:00:00Z",
                }
            ]
        }
    )


# --- Operation Encompass ----------------------------------------------------------------
#
# A police notification about a domestic abuse incident is a referral (ReferralReceived,
# source 6) and, for each child, one Operation Encompass notice to that child's school.
# One notice per child, so that a school's notice holds its own pupil and nobody else.

_NOTICE_EXAMPLE = {
    "referral_id": "0f8e3f52-7c1d-4b6a-8e2f-9d4c5b6a7e81",
    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
    "notice_id": "7e2d9c41-5b3a-4f60-8e1d-2c4b6a8f0e13",
}


class EncompassNoticeEvent(IntakeEvent):
    """An event about one Operation Encompass notice. Its subject is the police referral
    the notice came with, as for every front-door event; `notice_id` names the notice."""

    notice_id: UUID


class EncompassChild(ValueObject):
    """The child, as the Operation Encompass guidance says the school is told of them."""

    person_id: UUID = Field(description="The hub's id for this child.")
    given_name: Name
    family_name: Name
    date_of_birth: DateOfBirth | None = None
    present: bool = Field(description="Whether the child was present at the incident.")
    voice_of_child: Narrative | None = Field(
        default=None,
        description=(
            "What the child saw, heard or said, as the officer recorded it (whether they were"
            " spoken to, and with whom)."
        ),
    )


class EncompassNoticeIssued(EncompassNoticeEvent):
    """Police told the hub of a domestic abuse incident a child lived with or was present
    at: the child's school must hear of it before the next school day starts."""

    event_type: ClassVar[str] = "earlyhelp.encompass.notice_issued.v1"
    schema_version: ClassVar[int] = 1

    police_force: Slug = Field(description="The police partner (client id) that notified.")
    police_reference: ShortText = Field(description="The force's incident reference.")
    incident_at: AwareDatetime
    location_type: IncidentLocation
    domestic_abuse: bool = Field(description="Whether police recorded it as domestic abuse.")
    child: EncompassChild
    school_id: Slug | None = Field(
        default=None,
        description=(
            "The school partner (client id) the notice goes to; absent when no school is"
            " known for the child, and then the front door finds it."
        ),
    )
    school_urn: SchoolUrn | None = Field(
        default=None, description="The school's unique reference number, when known."
    )
    school_known_from: Literal["notification", "hub_record"] | None = Field(
        default=None,
        description=(
            "Where the school came from: the police notification (URN or DfE number), or the"
            " school staff recorded for the child on a case."
        ),
    )
    issued_at: AwareDatetime
    due_by: AwareDatetime = Field(
        description="The start of the next school day, by the authority's school calendar."
    )

    @model_validator(mode="after")
    def _school_consistent(self) -> Self:
        if (self.school_id is None) != (self.school_known_from is None):
            raise ValueError("school_known_from is given exactly when school_id is")
        if self.due_by <= self.issued_at:
            raise ValueError("due_by must come after issued_at")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _NOTICE_EXAMPLE
                | {
                    "police_force": "met-police-brent",
                    "police_reference": "CAD-4471-03MAR25",
                    "incident_at": "2025-03-07T21:40:00Z",
                    "location_type": "childs_home",
                    "domestic_abuse": True,
                    "child": {
                        "person_id": "c1a2b3c4-d5e6-4f70-8a91-b2c3d4e5f601",
                        "given_name": "Amira",
                        "family_name": "Hassan",
                        "date_of_birth": "2015-06-12",
                        "present": True,
                        "voice_of_child": (
                            "Amira was upstairs and heard shouting; she told the officer, with"
                            " her grandmother present, that she was frightened."
                        ),
                    },
                    "school_id": "harlesden-primary-school",
                    "school_urn": "101234",
                    "school_known_from": "notification",
                    "issued_at": "2025-03-07T23:05:00Z",
                    "due_by": "2025-03-10T08:30:00Z",
                }
            ]
        }
    )


class EncompassNoticeAcknowledged(EncompassNoticeEvent):
    """The school's designated safeguarding lead acknowledged the notice: through the
    school's system, or to the front door, which telephoned the school and records it."""

    event_type: ClassVar[str] = "earlyhelp.encompass.notice_acknowledged.v1"
    schema_version: ClassVar[int] = 1

    school_id: Slug | None = Field(
        description="The notice's school; absent when it had none and the front door found it."
    )
    acknowledged_at: AwareDatetime
    acknowledged_by: Actor = Field(
        description="The school partner system (client id), or the front-door staff member."
    )
    by_telephone: bool = Field(
        default=False,
        description="The front door told the school by telephone and recorded it for them.",
    )
    in_time: bool = Field(description="Acknowledged before the notice's deadline.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _NOTICE_EXAMPLE
                | {
                    "school_id": "harlesden-primary-school",
                    "acknowledged_at": "2025-03-10T07:52:00Z",
                    "acknowledged_by": "harlesden-primary-school",
                    "in_time": True,
                }
            ]
        }
    )


class EncompassNoticeAlerted(EncompassNoticeEvent):
    """The front door must act on a notice: no school is known for the child, or the
    school has not acknowledged it and its deadline is near."""

    event_type: ClassVar[str] = "earlyhelp.encompass.notice_alerted.v1"
    schema_version: ClassVar[int] = 1

    reason: EncompassAlertReason
    school_id: Slug | None = None
    due_by: AwareDatetime
    alerted_at: AwareDatetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _NOTICE_EXAMPLE
                | {
                    "reason": "unacknowledged",
                    "school_id": "harlesden-primary-school",
                    "due_by": "2025-03-10T08:30:00Z",
                    "alerted_at": "2025-03-10T07:30:00Z",
                }
            ]
        }
    )
