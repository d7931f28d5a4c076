"""Events the intake service (the front door) publishes on `earlyhelp.intake.v1`."""

from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from hub.contracts.base import EventData
from hub.contracts.codes import LevelOfNeed, ReferralSource, TriageRoute, Urgency
from hub.contracts.common import (
    Actor,
    Child,
    Concerns,
    Consent,
    HouseholdMember,
    Narrative,
    Referrer,
    SafeguardingOverride,
    ShortText,
    duplicates,
)
from hub.contracts.identifiers import Slug


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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.referrer is None) != (self.referral_source is ReferralSource.ANONYMOUS):
            raise ValueError(
                "referrer is required, and must be absent for an anonymous (9) referral"
            )
        if self.consent is None and self.safeguarding_override is None:
            raise ValueError("give consent or a safeguarding_override (or both)")
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
