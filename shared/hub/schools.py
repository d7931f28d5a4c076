"""The authority's schools for Operation Encompass: which school partner a URN or DfE
establishment number names, and where its designated safeguarding lead is e-mailed.

Intake resolves the school a police notification names; notifications e-mails the
school's designated safeguarding lead. Both read the same file (`config/schools.yaml`),
so it lives here rather than in either service.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.contracts.common import EmailAddress
from hub.contracts.identifiers import DfeEstablishmentNumber, SchoolUrn, Slug


class SchoolsError(ValueError):
    """The schools file is not one the hub can use."""


class School(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    school_id: Slug = Field(description="The school's partner client id (config/identities.yaml).")
    urn: SchoolUrn | None = None
    dfe_number: DfeEstablishmentNumber | None = Field(
        default=None, description="LAESTAB: local authority code and establishment number."
    )
    safeguarding_lead_email: EmailAddress = Field(
        description="Where the designated safeguarding lead receives Encompass notices."
    )

    @model_validator(mode="after")
    def _identified(self) -> School:
        if self.urn is None and self.dfe_number is None:
            raise ValueError(f"school {self.school_id} needs a urn or a dfe_number")
        return self


class SchoolRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schools: tuple[School, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> SchoolRegistry:
        for attribute in ("school_id", "urn", "dfe_number"):
            values = [getattr(s, attribute) for s in self.schools if getattr(s, attribute)]
            if len(values) != len(set(values)):
                raise ValueError(f"a {attribute} is listed for more than one school")
        return self

    @classmethod
    def load(cls, path: Path) -> SchoolRegistry:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()) or {})
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise SchoolsError(f"schools file {path} is not usable: {exc}") from exc

    def find(self, urn: str | None, dfe_number: str | None) -> School | None:
        """The school with this URN, else with this DfE establishment number."""
        for school in self.schools:
            if urn is not None and school.urn == urn:
                return school
        for school in self.schools:
            if dfe_number is not None and school.dfe_number == dfe_number:
                return school
        return None

    def get(self, school_id: str) -> School | None:
        return next((s for s in self.schools if s.school_id == school_id), None)
