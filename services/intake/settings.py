"""Intake's own settings (`EARLYHELP_INTAKE_*`): the front door's local framework and deadlines.

These belong to the front door alone, so they live here and not in the hub's
`HubSettings`. With nothing set: every level of need, and decisions due 4 hours
(immediate), 24 hours (urgent) and 72 hours (routine) after a referral arrived;
re-referrals within 12 months of closure; the third low-graded police
notification within 3 months escalates.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hub.contracts.codes import LevelOfNeed, Urgency
from hub.schools import SchoolRegistry
from hub.settings import REPO_ROOT
from intake.domain import FrontDoorRules
from intake.encompass import SchoolCalendar


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EARLYHELP_INTAKE_", extra="ignore")

    levels_of_need: Annotated[tuple[LevelOfNeed, ...], NoDecode] = Field(
        default=tuple(LevelOfNeed),
        min_length=1,
        description=(
            "The levels of need this authority's threshold framework uses, comma-separated "
            "(e.g. `universal,early_help,specialist`); triage refuses any other level."
        ),
    )
    deadline_immediate_hours: float = Field(
        default=4, gt=0, description="Hours the front door has to decide an immediate referral."
    )
    deadline_urgent_hours: float = Field(
        default=24, gt=0, description="Hours the front door has to decide an urgent referral."
    )
    deadline_routine_hours: float = Field(
        default=72, gt=0, description="Hours the front door has to decide a routine referral."
    )

    re_referral_months: int = Field(
        default=12,
        ge=0,
        le=120,
        description=(
            "A family referred again within this many months of its case closing is a"
            " re-referral of that case."
        ),
    )
    escalation_notice_count: int = Field(
        default=3,
        ge=2,
        le=20,
        description=(
            "The low-graded police notification for a family that raises it for triage as an"
            " escalating concern (the third, by default); earlier ones are held for information."
        ),
    )
    escalation_window_months: int = Field(
        default=3,
        ge=1,
        le=24,
        description="How far back, in months, low-graded notifications count towards escalation.",
    )

    # Operation Encompass (docs/encompass.md).
    school_calendar_file: Path = Field(
        default=REPO_ROOT / "config" / "school-calendar.yaml",
        description=(
            "The authority's school calendar: time zone, school-day start, weekend, closures,"
            " and how long before a notice's deadline the front door is alerted."
        ),
    )
    schools_file: Path = Field(
        default=REPO_ROOT / "config" / "schools.yaml",
        description="The authority's schools: URN and DfE number of each school partner.",
    )
    encompass_check_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="How often the deadline watch looks for notices close to their deadline.",
    )

    # Subject access: intake gathers every service's answer over HTTP (docs/operations.md).
    allocation_url: str = Field(
        default="http://127.0.0.1:8002",
        description="Where intake reaches allocation's API, for subject access requests.",
    )
    caseplan_url: str = Field(
        default="http://127.0.0.1:8003",
        description="Where intake reaches case plan's API, for subject access requests.",
    )
    notifications_url: str = Field(
        default="http://127.0.0.1:8004",
        description="Where intake reaches notifications' API, for subject access requests.",
    )
    subject_access_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=300,
        description="How long intake waits for each service's part of a subject access answer.",
    )

    @field_validator("allocation_url", "caseplan_url", "notifications_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("give an http:// or https:// URL")
        return value.rstrip("/")

    def service_urls(self) -> dict[str, str]:
        """The other services whose parts a subject access answer gathers, in journey order."""
        return {
            "allocation": self.allocation_url,
            "caseplan": self.caseplan_url,
            "notifications": self.notifications_url,
        }

    @field_validator("levels_of_need", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("levels_of_need")
    @classmethod
    def _each_once(cls, value: tuple[LevelOfNeed, ...]) -> tuple[LevelOfNeed, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a level of need is listed more than once")
        return value

    def decision_deadline(self, urgency: Urgency) -> timedelta:
        """How long after receipt a referral of this urgency should be decided."""
        hours = {
            Urgency.IMMEDIATE: self.deadline_immediate_hours,
            Urgency.URGENT: self.deadline_urgent_hours,
            Urgency.ROUTINE: self.deadline_routine_hours,
        }[urgency]
        return timedelta(hours=hours)

    def school_calendar(self) -> SchoolCalendar:
        return _calendar(self.school_calendar_file)

    def schools(self) -> SchoolRegistry:
        return _schools(self.schools_file)

    def front_door_rules(self) -> FrontDoorRules:
        return FrontDoorRules(
            re_referral_months=self.re_referral_months,
            escalation_notice_count=self.escalation_notice_count,
            escalation_window_months=self.escalation_window_months,
        )


@lru_cache(maxsize=4)
def _calendar(path: Path) -> SchoolCalendar:
    return SchoolCalendar.load(path)


@lru_cache(maxsize=4)
def _schools(path: Path) -> SchoolRegistry:
    return SchoolRegistry.load(path)


@lru_cache(maxsize=1)
def intake_settings() -> IntakeSettings:
    """The settings from the environment, read once."""
    return IntakeSettings()


async def current_settings() -> IntakeSettings:
    """FastAPI dependency: intake's settings; tests override it on the app."""
    return intake_settings()
