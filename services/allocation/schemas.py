"""What staff send to and receive from the allocation service."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, model_validator

from allocation.registry import Locality, Provider, Team, Worker
from hub.contracts.allocation import SupportService
from hub.contracts.codes import SupportIntensity, Urgency
from hub.contracts.common import IsoDate, Name, Narrative, Practitioner, ShortText
from hub.contracts.identifiers import Slug

SAMIRA = "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65"
_CASE = "a3d9e6b4-1c2f-4e8a-b7d5-6f0c9e2a1b34"
_FAMILY = "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90"
_PANEL = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


class Request(BaseModel):
    """What staff send. Dates are ISO 8601 strings and booleans true or false only, as the
    schema says: pydantic's lax mode would read 0 as 1 January 1970 and "off" as false."""

    model_config = ConfigDict(extra="forbid")


class AllocationRequest(Request):
    """A team and worker, or `auto: true` for the best-matched worker with spare capacity."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"team_id": "harlesden-early-help", "worker_id": SAMIRA},
                {"auto": True},
                {
                    "team_id": "harlesden-early-help",
                    "worker_id": SAMIRA,
                    "override_reason": "Samira already knows the family from the 2023 case.",
                },
            ]
        },
    )

    auto: StrictBool = Field(default=False, description="Let the service choose team and worker.")
    team_id: Slug | None = None
    worker_id: UUID | None = None
    override_reason: Narrative | None = Field(
        default=None,
        description=(
            "Allocate although the worker is at their caseload limit (needs the scope "
            "allocations:override: a team manager)."
        ),
    )

    @model_validator(mode="after")
    def _target_or_auto(self) -> Self:
        chosen = self.team_id is not None and self.worker_id is not None
        named = self.team_id is not None or self.worker_id is not None
        if self.auto == chosen or (self.auto and named) or (named and not chosen):
            raise ValueError("give team_id and worker_id, or auto: true (not both)")
        return self


class ReallocationRequest(AllocationRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "team_id": "harlesden-early-help",
                    "worker_id": "cc56d0f1-f938-4c10-9672-9bfe316be20b",
                    "reason": "Family asked for a male worker for the eldest boy's sessions.",
                }
            ]
        },
    )

    reason: Narrative = Field(description="Why the case moves; the family's record keeps it.")


class CaseloadReallocationRequest(AllocationRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"auto": True, "reason": "Samira left the authority on 28 March 2025."},
            ]
        },
    )

    reason: Narrative


class Allocation(BaseModel):
    """A case's place in the queue and who holds it."""

    case_id: UUID
    family_id: UUID
    status: str = Field(description="unallocated, allocated or closed.")
    source: str = Field(description="triage (a referral) or step_down (from social care).")
    locality: str | None
    urgency: Urgency
    queued_at: datetime
    waiting_seconds: int = Field(description="Time in the queue: until allocated, or until now.")
    team_id: str | None = None
    worker_id: UUID | None = None
    lead_professional_name: str | None = None
    allocated_at: datetime | None = None


class QueueStatus(StrEnum):
    UNALLOCATED = "unallocated"
    ALLOCATED = "allocated"
    CLOSED = "closed"


class AllocationQueue(BaseModel):
    status: QueueStatus
    items: list[Allocation]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class AllocationRecorded(BaseModel):
    case_id: UUID
    family_id: UUID
    locality: str
    team_id: str
    lead_professional: Practitioner
    allocated_at: AwareDatetime
    is_reallocation: bool
    reason: str | None


class CaseloadReallocated(BaseModel):
    worker_id: UUID
    moved: list[AllocationRecorded]


class CaseloadEntry(BaseModel):
    worker_id: UUID
    name: str
    team_id: str
    available: bool
    caseload: int
    caseload_limit: int
    spare: int


class Caseloads(BaseModel):
    workers: list[CaseloadEntry]
    teams: dict[str, int] = Field(description="Open cases held by each team.")


class LocalityTimeliness(BaseModel):
    locality: str
    allocated: int
    waiting: int
    median_hours_to_allocation: float | None
    longest_hours_to_allocation: float | None


class Timeliness(BaseModel):
    """Time from triage (or step-down) to first allocation, per locality."""

    localities: list[LocalityTimeliness]


# --- registry -----------------------------------------------------------------------


class AuthorityRegistry(BaseModel):
    authority_id: str
    name: str
    localities: list[Locality]
    teams: list[Team]
    workers: list[Worker]
    providers: list[Provider]


class RegistryView(BaseModel):
    authorities: list[AuthorityRegistry]


class RegistryChange(BaseModel):
    kind: str
    entry_id: str
    authority_id: str
    updated_at: AwareDatetime
    updated_by: str


class ServiceCapacity(BaseModel):
    provider_id: str
    provider_name: str
    kind: str
    service_id: str
    service: str
    capacity: int | None
    taken: int
    remaining: int | None


class ProviderCapacity(BaseModel):
    services: list[ServiceCapacity]


# --- panels -------------------------------------------------------------------------


class PanelMemberIn(Request):
    name: Name
    agency: ShortText


class PanelRequest(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "locality": "brent-harlesden",
                    "name": "Harlesden early intervention coordination group",
                    "meets_on": "2025-04-02",
                    "members": [
                        {"name": "Grace Mensah", "agency": "Brent early help (chair)"},
                        {"name": "Jo Adeyemi", "agency": "Harlesden Primary School"},
                        {"name": "Ade Coker", "agency": "Brent health visiting"},
                    ],
                }
            ]
        },
    )

    locality: Slug
    name: ShortText
    meets_on: IsoDate
    members: list[PanelMemberIn] = Field(min_length=1, max_length=30)


class AgendaItem(BaseModel):
    case_id: UUID
    family_id: UUID
    assessment_completed_at: datetime
    status: str = Field(description="awaiting or decided.")


class Panel(BaseModel):
    panel_id: UUID
    locality: str
    name: str
    meets_on: date
    members: list[PanelMemberIn]
    agenda: list[AgendaItem] = Field(default_factory=list)


class PanelList(BaseModel):
    panels: list[Panel]


class PackageItemIn(Request):
    provider_id: Slug
    service_id: Slug
    start_date: IsoDate
    intensity: SupportIntensity


class LeadProfessionalChoice(Request):
    worker_id: UUID


class DecisionRequest(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "case_id": _CASE,
                    "package": [
                        {
                            "provider_id": "brent-family-wellbeing-centres",
                            "service_id": "triple-p-group",
                            "start_date": "2025-04-14",
                            "intensity": "standard",
                        },
                        {
                            "provider_id": "nw-london-talking-therapies",
                            "service_id": "adult-talking-therapies",
                            "start_date": "2025-04-22",
                            "intensity": "standard",
                        },
                    ],
                    "lead_professional": {"worker_id": SAMIRA},
                    "review_date": "2025-07-02",
                    "members_present": [
                        {"name": "Grace Mensah", "agency": "Brent early help (chair)"},
                        {"name": "Jo Adeyemi", "agency": "Harlesden Primary School"},
                    ],
                }
            ]
        },
    )

    case_id: UUID
    package: list[PackageItemIn] = Field(min_length=1, max_length=20)
    lead_professional: LeadProfessionalChoice = Field(
        description="Confirms the case's worker, or names another (the case moves to them)."
    )
    review_date: IsoDate | None = Field(
        default=None, description="Defaults to three months on; no later than the maximum."
    )
    members_present: list[PanelMemberIn] = Field(min_length=1, max_length=30)


class LeadProfessionalSummary(BaseModel):
    worker_id: UUID
    name: str


class DecisionRecorded(BaseModel):
    panel_id: UUID
    case_id: UUID
    family_id: UUID
    decided_at: AwareDatetime
    package: list[SupportService]
    lead_professional: LeadProfessionalSummary
    review_date: date
    members_present: list[PanelMemberIn]


class CaseAllocationView(BaseModel):
    allocation: Allocation
    panel_decisions: list[DecisionRecorded]
