"""Allocation's own settings (`EARLYHELP_ALLOCATION_*`): the registry file and panel reviews.

With nothing set: the registry in `config/registry.yaml`, and panel reviews three
months after the decision by default and at the latest, as the seeds' panels did.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.settings import REPO_ROOT


class AllocationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EARLYHELP_ALLOCATION_", extra="ignore")

    registry_file: Path = Field(
        default=REPO_ROOT / "config" / "registry.yaml",
        description=(
            "Localities, teams, workers and providers loaded into an empty database; "
            "after that the registry API changes them."
        ),
    )
    review_default_months: int = Field(
        default=3, ge=1, le=24, description="A panel's review date when it sets none."
    )
    review_maximum_months: int = Field(
        default=3, ge=1, le=24, description="The latest review date a panel may set."
    )

    @model_validator(mode="after")
    def _default_within_maximum(self) -> Self:
        if self.review_default_months > self.review_maximum_months:
            raise ValueError("review_default_months cannot exceed review_maximum_months")
        return self


@lru_cache(maxsize=1)
def allocation_settings() -> AllocationSettings:
    """The settings from the environment, read once."""
    return AllocationSettings()


async def current_settings() -> AllocationSettings:
    """FastAPI dependency: allocation's settings; tests override it on the app."""
    return allocation_settings()
