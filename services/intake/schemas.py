"""What partners send to and receive from the front door."""

from __future__ import annotations

from datetime import datetime
from typing import Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from hub.contracts.codes import ReferralSource, Urgency
from hub.contracts.common import (
    ChildDetails,
    Concerns,
    Consent,
    HouseholdMemberDetails,
    Referrer,
    SafeguardingOverride,
    ShortText,
)
from hub.contracts.intake import ReferralReceived
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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.referrer is None) != (self.referral_source is ReferralSource.ANONYMOUS):
            raise ValueError(
                "referrer is required, and must be absent for an anonymous (9) referral"
            )
        if self.consent is None and self.safeguarding_override is None:
            raise ValueError("give consent or a safeguarding_override (or both)")
        return self


class ReferralAccepted(BaseModel):
    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    received_at: AwareDatetime


class ReferralView(BaseModel):
    """What the hub tells a referrer about one referral."""

    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    received_at: datetime
    urgency: Urgency
    referral_source: ReferralSource
    partner_reference: str | None
