"""The registry: localities and the postcodes they cover, teams, workers and providers.

The models describe `config/registry.yaml` and the registry API alike. `Registry`
is the checked, indexed whole that allocation decisions read; `load`,
`seed_if_empty` and `save_entry` keep it in the service's database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)
from sqlalchemy import Connection, select

from allocation.tables import registry_entries
from hub.contracts.codes import CinFactor
from hub.contracts.common import ContactDetails, EmailAddress, Name, PhoneNumber, ShortText
from hub.contracts.identifiers import Slug, normalise_postcode
from hub.sql import insert_if_absent, upsert
from hub.yaml_files import load_yaml

# A postcode district ("NW10") or sector ("NW10 2"), in upper case with one space.
_COVERAGE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?( [0-9])?$")


class Specialism(StrEnum):
    DOMESTIC_ABUSE = "domestic_abuse"
    SUBSTANCE_MISUSE = "substance_misuse"
    MENTAL_HEALTH = "mental_health"
    YOUTH_WORK = "youth_work"
    PARENTING = "parenting"
    EARLY_YEARS = "early_years"
    LEARNING_DISABILITY = "learning_disability"


# What each CIN factor asks of a team: the number before the letter names the
# concern (1 alcohol, 2 drugs, 3 domestic abuse, ...), whoever it is about.
_FACTOR_SPECIALISMS: dict[str, Specialism] = {
    "1": Specialism.SUBSTANCE_MISUSE,
    "2": Specialism.SUBSTANCE_MISUSE,
    "3": Specialism.DOMESTIC_ABUSE,
    "4": Specialism.MENTAL_HEALTH,
    "5": Specialism.LEARNING_DISABILITY,
    "10": Specialism.YOUTH_WORK,
    "11": Specialism.YOUTH_WORK,
    "13": Specialism.YOUTH_WORK,
    "14": Specialism.YOUTH_WORK,
    "15": Specialism.MENTAL_HEALTH,
    "16": Specialism.PARENTING,
    "17": Specialism.PARENTING,
    "24": Specialism.YOUTH_WORK,
}


def needs_of(factors: Iterable[CinFactor | str]) -> frozenset[Specialism]:
    """The specialisms a case's concern factors call for."""
    needs = set()
    for factor in factors:
        number = str(factor).rstrip("ABCDEF")
        if number in _FACTOR_SPECIALISMS:
            needs.add(_FACTOR_SPECIALISMS[number])
    return frozenset(needs)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeRange(Entry):
    """Ages in whole years, both ends included: 0-5 and 5-19 both take a five-year-old."""

    minimum: StrictInt = Field(ge=0, le=25)
    maximum: StrictInt = Field(ge=0, le=25)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.minimum > self.maximum:
            raise ValueError("minimum cannot be more than maximum")
        return self

    def covers(self, age: int) -> bool:
        return self.minimum <= age <= self.maximum


class Locality(Entry):
    locality_id: Slug
    name: Name
    postcodes: tuple[str, ...] = Field(
        min_length=1, description='Postcode districts ("NW10") or sectors ("NW10 2") covered.'
    )

    @field_validator("postcodes")
    @classmethod
    def _districts_or_sectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = tuple(" ".join(part.upper().split()) for part in value)
        for item in normalised:
            if not _COVERAGE.fullmatch(item):
                raise ValueError(f"{item!r} is not a postcode district or sector")
        return normalised


class Team(Entry):
    team_id: Slug
    name: ShortText
    locality: Slug
    age_range: AgeRange
    specialisms: tuple[Specialism, ...] = ()


class Worker(ContactDetails):
    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_id: UUID
    staff_client_id: Slug | None = Field(
        default=None, description="The worker's staff client in the identities file, if any."
    )
    name: Name
    role: ShortText
    team: Slug
    # Strict: a manager's "30" or "off" is refused, not read as a number or as False.
    hours_per_week: StrictFloat = Field(gt=0, le=60)
    caseload_limit: StrictInt = Field(
        ge=0, le=100, description="Cases held before a manager must override."
    )
    available: StrictBool = Field(
        default=True, description="False while on long absence or after leaving: takes no cases."
    )


class ProviderService(Entry):
    """One service a provider offers, as an Open Referral UK `service`."""

    service_id: Slug
    name: ShortText
    status: Literal["active", "inactive"] = "active"
    age_range: AgeRange | None = None
    service_areas: tuple[Slug, ...] = Field(default=(), description="Localities served.")
    capacity: StrictInt | None = Field(
        default=None, ge=0, description="Places a panel can commission; none means not limited."
    )


class Provider(Entry):
    """An Open Referral UK `organization` with its services: a council team or a commission."""

    provider_id: Slug
    name: ShortText
    kind: Literal["internal", "commissioned"]
    url: HttpUrl | None = None
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    services: tuple[ProviderService, ...] = Field(min_length=1)

    def service(self, service_id: str) -> ProviderService | None:
        return next((s for s in self.services if s.service_id == service_id), None)


class Authority(Entry):
    authority_id: Slug
    name: ShortText
    localities: tuple[Locality, ...] = ()
    teams: tuple[Team, ...] = ()
    workers: tuple[Worker, ...] = ()
    providers: tuple[Provider, ...] = ()


class RegistryFile(Entry):
    authorities: tuple[Authority, ...] = Field(min_length=1)


KIND_MODELS: dict[str, type[BaseModel]] = {
    "locality": Locality,
    "team": Team,
    "worker": Worker,
    "provider": Provider,
}


def entry_id(kind: str, entry: BaseModel) -> str:
    return str(getattr(entry, f"{kind}_id"))


class RegistryInconsistent(ValueError):
    """Entries that refer to ones that do not exist, or ids and postcodes used twice."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Registry:
    """Every authority's entries, indexed, and checked to refer only to each other."""

    authorities: dict[str, str]
    localities: dict[str, Locality]
    teams: dict[str, Team]
    workers: dict[str, Worker]
    providers: dict[str, Provider]
    authority_of: dict[tuple[str, str], str]

    @classmethod
    def of(cls, authorities: Iterable[Authority]) -> Registry:
        names: dict[str, str] = {}
        kinds: dict[str, dict[str, BaseModel]] = {kind: {} for kind in KIND_MODELS}
        authority_of: dict[tuple[str, str], str] = {}
        problems: list[tuple[str, str]] = []
        for authority in authorities:
            names[authority.authority_id] = authority.name
            for kind in KIND_MODELS:
                for entry in getattr(authority, f"{kind}s" if kind != "locality" else "localities"):
                    key = entry_id(kind, entry)
                    if key in kinds[kind]:
                        problems.append((f"{kind}_id", f"{key} is used twice"))
                    kinds[kind][key] = entry
                    authority_of[(kind, key)] = authority.authority_id
        registry = cls(
            authorities=names,
            localities=kinds["locality"],  # type: ignore[arg-type]
            teams=kinds["team"],  # type: ignore[arg-type]
            workers=kinds["worker"],  # type: ignore[arg-type]
            providers=kinds["provider"],  # type: ignore[arg-type]
            authority_of=authority_of,
        )
        problems += registry._reference_problems()
        if problems:
            raise RegistryInconsistent(problems)
        return registry

    def _reference_problems(self) -> list[tuple[str, str]]:
        problems = []
        covered: dict[str, str] = {}
        for locality in self.localities.values():
            for area in locality.postcodes:
                if area in covered:
                    problems.append(("postcodes", f"{area} is covered by {covered[area]} already"))
                covered[area] = locality.locality_id
        for team in self.teams.values():
            if team.locality not in self.localities:
                problems.append(("locality", f"no locality {team.locality} (team {team.team_id})"))
        for worker in self.workers.values():
            if worker.team not in self.teams:
                problems.append(("team", f"no team {worker.team} (worker {worker.worker_id})"))
        for provider in self.providers.values():
            for service in provider.services:
                unknown = [a for a in service.service_areas if a not in self.localities]
                if unknown:
                    problems.append(("services.service_areas", f"no locality {unknown[0]}"))
        return problems

    def entries(self, kind: str) -> dict[str, BaseModel]:
        return {
            "locality": self.localities,
            "team": self.teams,
            "worker": self.workers,
            "provider": self.providers,
        }[kind]  # type: ignore[return-value]

    def locality_for_postcode(self, postcode: str) -> str | None:
        """The locality covering a postcode: a sector match wins over a district match."""
        normalised = normalise_postcode(postcode)
        sector, district = normalised[:-2], normalised.split(" ")[0]
        for area in (sector, district):
            for locality in self.localities.values():
                if area in locality.postcodes:
                    return locality.locality_id
        return None

    def worker(self, worker_id: UUID | str) -> Worker | None:
        return self.workers.get(str(worker_id))

    def teams_in(self, locality: str) -> list[Team]:
        return [team for team in self.teams.values() if team.locality == locality]

    def workers_in(self, team_id: str) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.team == team_id]

    def with_entry(self, kind: str, entry: BaseModel, authority_id: str) -> Registry:
        """The registry with one entry added or replaced (checked as a whole again)."""
        grouped = self._as_authorities()
        authority = grouped[authority_id]
        field = "localities" if kind == "locality" else f"{kind}s"
        kept = tuple(
            e for e in getattr(authority, field) if entry_id(kind, e) != entry_id(kind, entry)
        )
        grouped[authority_id] = authority.model_copy(update={field: (*kept, entry)})
        return Registry.of(grouped.values())

    def _as_authorities(self) -> dict[str, Authority]:
        grouped = {
            authority_id: {"authority_id": authority_id, "name": name}
            for authority_id, name in self.authorities.items()
        }
        for (kind, key), authority_id in self.authority_of.items():
            field = "localities" if kind == "locality" else f"{kind}s"
            grouped[authority_id].setdefault(field, []).append(self.entries(kind)[key])
        return {key: Authority.model_validate(value) for key, value in grouped.items()}


def read_file(path: Path) -> Registry:
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError as exc:
        raise RuntimeError(
            f"registry file {path} not found (set EARLYHELP_ALLOCATION_REGISTRY_FILE)"
        ) from exc
    return Registry.of(RegistryFile.model_validate(raw).authorities)


# --- the database -------------------------------------------------------------------

_SEEDED_BY = "registry-file"


def seed_if_empty(conn: Connection, path: Path, now: datetime) -> bool:
    """Load the registry file into a database that holds no registry yet; True if it did.

    Rows are inserted only where absent, so two processes seeding at once agree.
    """
    if conn.execute(select(registry_entries.c.kind).limit(1)).first() is not None:
        return False
    registry = read_file(path)
    for authority_id, name in registry.authorities.items():
        _insert(
            conn,
            "authority",
            authority_id,
            authority_id,
            {"authority_id": authority_id, "name": name},
            now,
        )
    for (kind, key), authority_id in registry.authority_of.items():
        document = registry.entries(kind)[key].model_dump(mode="json")
        _insert(conn, kind, key, authority_id, document, now)
    return True


def _insert(conn, kind, key, authority_id, document, now) -> None:
    insert_if_absent(
        conn,
        registry_entries,
        {
            "kind": kind,
            "entry_id": key,
            "authority_id": authority_id,
            "document": json.dumps(document),
            "updated_at": now,
            "updated_by": _SEEDED_BY,
        },
    )


def load(conn: Connection) -> Registry:
    rows = conn.execute(
        select(
            registry_entries.c.kind, registry_entries.c.authority_id, registry_entries.c.document
        )
    ).all()
    grouped: dict[str, dict] = {}
    for row in rows:
        if row.kind == "authority":
            grouped.setdefault(row.authority_id, {}).update(json.loads(row.document))
    for row in rows:
        if row.kind != "authority":
            field = "localities" if row.kind == "locality" else f"{row.kind}s"
            grouped[row.authority_id].setdefault(field, []).append(json.loads(row.document))
    return Registry.of(Authority.model_validate(value) for value in grouped.values())


def save_entry(
    conn: Connection, kind: str, entry: BaseModel, authority_id: str, actor: str, now: datetime
) -> None:
    upsert(
        conn,
        registry_entries,
        {
            "kind": kind,
            "entry_id": entry_id(kind, entry),
            "authority_id": authority_id,
            "document": entry.model_dump_json(),
            "updated_at": now,
            "updated_by": actor,
        },
        key=("kind", "entry_id"),
    )
