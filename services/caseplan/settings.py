"""Case plan's own settings (`EARLYHELP_CASEPLAN_*`): review intervals and re-referral window.

With nothing set: a plan is reviewed at most three months after the last review,
and a family referred again within twelve months of a closure counts as a
re-referral.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from caseplan.claims import ClaimRules


class CaseplanSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EARLYHELP_CASEPLAN_", extra="ignore")

    max_review_interval_months: int = Field(
        default=3,
        ge=1,
        le=12,
        description="The furthest a review may set the next review date, in calendar months.",
    )
    re_referral_window_months: int = Field(
        default=12,
        ge=1,
        description="A case opened this soon after the family's last closure is a re-referral.",
    )
    sf_min_headline_needs: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Supporting Families: the different headline needs a family must have at "
        "the start to be claimed for.",
    )
    sf_sustain_months: int = Field(
        default=6,
        ge=1,
        le=24,
        description="Supporting Families: how long after closure the outcome must hold, with "
        "no new referral or case, before it can be claimed.",
    )

    def claim_rules(self) -> ClaimRules:
        return ClaimRules(self.sf_min_headline_needs, self.sf_sustain_months)


@lru_cache(maxsize=1)
def caseplan_settings() -> CaseplanSettings:
    """The settings from the environment, read once."""
    return CaseplanSettings()


async def current_settings() -> CaseplanSettings:
    """FastAPI dependency: case plan's settings; tests override it on the app."""
    return caseplan_settings()
