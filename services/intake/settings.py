"""Intake's own settings (`EARLYHELP_INTAKE_*`): the front door's local framework and deadlines.

These belong to the front door alone, so they live here and not in the hub's
`HubSettings`. With nothing set: every level of need, and decisions due 4 hours
(immediate), 24 hours (urgent) and 72 hours (routine) after a referral arrived.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hub.contracts.codes import LevelOfNeed, Urgency


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


@lru_cache(maxsize=1)
def intake_settings() -> IntakeSettings:
    """The settings from the environment, read once."""
    return IntakeSettings()


async def current_settings() -> IntakeSettings:
    """FastAPI dependency: intake's settings; tests override it on the app."""
    return intake_settings()
