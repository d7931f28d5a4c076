"""Events the allocation service (teams, workers, panel) publishes on `earlyhelp.allocation.v1`."""

from datetime import date
from typing import ClassVar, Self
from uuid import UUID

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from hub.contracts.base import EventData
from hub.contracts.codes import SupportIntensity
from hub.contracts.common import Actor, Name, Narrative, Practitioner, ShortText, ValueObject
from hub.contracts.identifiers import Slug

_LEAD_PROFESSIONAL_EXAMPLE = {
    "worker_id": "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65",
    "name": "Samira Okafor",
    "role": "Family support practitioner",
    "team_name": "Harlesden early help team",
    "email": "samira.okafor@brent.example.gov.uk",
    "phone": "020 7946 0582",
    "staff_client_id": "samira-okafor",
}


class AllocationEvent(EventData):
    producer: ClassVar[str] = "allocation"

    case_id: UUID

    def subject(self) -> str:
        return str(self.case_id)


class CaseAllocated(AllocationEvent):
    """A locality team and a lead professional took the case (or took it over)."""

    event_type: ClassVar[str] = "earlyhelp.case.allocated.v1"
    schema_version: ClassVar[int] = 1

    locality: Slug
    team_id: Slug
    lead_professional: Practitioner
    allocated_at: AwareDatetime
    allocated_by: Actor
    is_reallocation: bool
    reason: Narrative | None = Field(default=None, description="Why; required for a reallocation.")

    @model_validator(mode="after")
    def _reallocation_explained(self) -> Self:
        if self.is_reallocation and self.reason is None:
            raise ValueError("reason is required when is_reallocation is true")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "case_id": "a3d9e6b4-1c2f-4e8a-b7d5-6f0c9e2a1b34",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "locality": "brent-harlesden",
                    "team_id": "harlesden-early-help",
                    "lead_professional": _LEAD_PROFESSIONAL_EXAMPLE,
                    "allocated_at": "2025-03-05T10:00:00Z",
                    "allocated_by": "team.manager.harlesden@brent.example.gov.uk",
                    "is_reallocation": False,
                }
            ]
        }
    )


class SupportService(ValueObject):
    """One service in the package a panel agrees."""

    service: ShortText
    provider_id: Slug = Field(description="Provider's Open Referral UK organisation id.")
    start_date: date
    intensity: SupportIntensity
    commissioned: bool = Field(
        description="True when bought from an outside provider; false for the council's own teams."
    )


class PanelMember(ValueObject):
    name: Name
    agency: ShortText


class PanelDecisionRecorded(AllocationEvent):
    """A multi-agency panel agreed a package of support, the lead professional and a review date."""

    event_type: ClassVar[str] = "earlyhelp.panel.decision_recorded.v1"
    schema_version: ClassVar[int] = 1

    panel_id: UUID = Field(description="The panel meeting that decided.")
    decided_at: AwareDatetime
    package: tuple[SupportService, ...] = Field(min_length=1)
    lead_professional: Practitioner
    review_date: date
    members_present: tuple[PanelMember, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _review_after_decision(self) -> Self:
        if self.review_date <= self.decided_at.date():
            raise ValueError("review_date must be after the day of decided_at")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "panel_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
                    "case_id": "a3d9e6b4-1c2f-4e8a-b7d5-6f0c9e2a1b34",
                    "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
                    "decided_at": "2025-04-02T11:00:00Z",
                    "package": [
                        {
                            "service": "Parenting support: Triple P group programme",
                            "provider_id": "brent-family-wellbeing-centres",
                            "start_date": "2025-04-14",
                            "intensity": "standard",
                            "commissioned": False,
                        },
                        {
                            "service": "Adult talking therapies, self-referral supported",
                            "provider_id": "nw-london-talking-therapies",
                            "start_date": "2025-04-22",
                            "intensity": "standard",
                            "commissioned": True,
                        },
                    ],
                    "lead_professional": _LEAD_PROFESSIONAL_EXAMPLE,
                    "review_date": "2025-07-02",
                    "members_present": [
                        {"name": "Dev Patel", "agency": "Brent early help (chair)"},
                        {"name": "Jo Adeyemi", "agency": "Harlesden Primary School"},
                        {"name": "Grace Mensah", "agency": "Health visiting"},
                    ],
                }
            ]
        }
    )
