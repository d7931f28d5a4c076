"""Who works a case and what the panel agrees for it: pure decisions, no I/O.

A case's allocation stream holds its `CaseAllocated` and `PanelDecisionRecorded`
events. Everything a decision needs from outside (what the queue knows about
the case, the registry, caseloads, places taken, the clock, the caller) comes in
as arguments, so the same inputs always decide the same.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from uuid import UUID

from allocation.registry import Registry, Team, Worker, needs_of
from hub.contracts.allocation import (
    CaseAllocated,
    PanelDecisionRecorded,
    PanelMember,
    SupportService,
)
from hub.contracts.base import EventData
from hub.contracts.codes import SupportIntensity
from hub.contracts.common import Practitioner
from hub.contracts.dates import authority_date
from hub.refusals import Invalid, Refusal, RefusedField

# --- errors: each is a refusal that says its own HTTP answer --------------------------


class AllocationRuleBroken(Refusal):
    """A command the case's current state does not allow (409)."""

    status = 409
    problem = "allocation-conflict"
    title = "Not possible now"


class AlreadyAllocated(AllocationRuleBroken):
    pass


class NotAllocated(AllocationRuleBroken):
    pass


class NoWorkerAvailable(AllocationRuleBroken):
    problem = "no-worker-available"
    title = "No worker available"


class NotOnAgenda(AllocationRuleBroken):
    problem = "case-not-on-agenda"
    title = "Not on the agenda"


class OverCapacity(AllocationRuleBroken):
    problem = "worker-over-capacity"
    title = "Over capacity"

    def __init__(self, worker: Worker, caseload: int) -> None:
        super().__init__(
            f"{worker.name} holds {caseload} cases, at or over the limit of "
            f"{worker.caseload_limit}; a manager may override with a reason"
        )
        self.worker = worker


class NoPlacesLeft(AllocationRuleBroken):
    problem = "provider-full"
    title = "No places left"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, extensions={"field": field})
        self.field = field


class InvalidCommand(Invalid, ValueError):
    """A command inconsistent with the registry or with itself (422), naming the field."""

    def __init__(self, field: str, message: str, code: str = "allocation_rule") -> None:
        super().__init__(
            "The request does not fit the registry or the case.",
            errors=[RefusedField(field, message, code)],
        )
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# --- state --------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFacts:
    """What the queue knows of a case from intake's and caseplan's events."""

    case_id: UUID
    family_id: UUID
    locality: str | None
    children_dates_of_birth: tuple[date, ...] = ()
    factors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseAllocation:
    """The case as its own allocation stream tells it."""

    case_id: UUID
    family_id: UUID
    version: int = 0
    worker_id: UUID | None = None
    team_id: str | None = None
    locality: str | None = None
    decided_panels: frozenset[UUID] = field(default_factory=frozenset)


def stream_id(case_id: UUID) -> str:
    return f"case-{case_id}"


def apply(current: CaseAllocation, event: EventData) -> CaseAllocation:
    version = current.version + 1
    if isinstance(event, CaseAllocated):
        return replace(
            current,
            version=version,
            worker_id=event.lead_professional.worker_id,
            team_id=event.team_id,
            locality=event.locality,
        )
    if isinstance(event, PanelDecisionRecorded):
        return replace(
            current, version=version, decided_panels=current.decided_panels | {event.panel_id}
        )
    raise AllocationRuleBroken(f"a case's allocation does not follow {event.event_type}")


def replay(case_id: UUID, family_id: UUID, events: Iterable[EventData]) -> CaseAllocation:
    state = CaseAllocation(case_id, family_id)
    for event in events:
        state = apply(state, event)
    return state


# --- choosing a worker --------------------------------------------------------------


def age_on(date_of_birth: date, today: date) -> int:
    """Completed years; an unborn child (a date still to come) counts as 0."""
    if date_of_birth > today:
        return 0
    birthday_passed = (today.month, today.day) >= (date_of_birth.month, date_of_birth.day)
    return today.year - date_of_birth.year - (0 if birthday_passed else 1)


def choose_worker(
    facts: CaseFacts,
    registry: Registry,
    caseloads: Mapping[str, int],
    today: date,
    exclude: Iterable[UUID] = (),
) -> tuple[Team, Worker]:
    """The worker `auto` picks: in a team of the case's locality whose age range takes
    the most of the children, then the team meeting most of the case's needs, then the
    worker with the most spare capacity (limit minus cases held); ties: lower worker id.
    """
    if facts.locality is None or facts.locality not in registry.localities:
        raise NoWorkerAvailable(f"case {facts.case_id} has no locality known to the registry")
    ages = [age_on(born, today) for born in facts.children_dates_of_birth]
    needs = needs_of(facts.factors)
    excluded = {str(worker_id) for worker_id in exclude}
    candidates = []
    for team in registry.teams_in(facts.locality):
        # Whole-family working: one lead worker for every child, so the team taking the
        # most of the children wins (a 4- and a 7-year-old fit neither 0-5 nor 5-19 alone).
        covered = sum(team.age_range.covers(age) for age in ages)
        if ages and covered == 0:
            continue
        matched = len(needs & set(team.specialisms))
        for worker in registry.workers_in(team.team_id):
            spare = worker.caseload_limit - caseloads.get(str(worker.worker_id), 0)
            if worker.available and spare > 0 and str(worker.worker_id) not in excluded:
                candidates.append(
                    ((-covered, -matched, -spare, str(worker.worker_id)), team, worker)
                )
    if not candidates:
        raise NoWorkerAvailable(
            f"no worker with spare capacity in a {facts.locality} team for children aged "
            f"{', '.join(map(str, sorted(ages))) or 'unknown'}: choose a worker and override"
        )
    _, team, worker = min(candidates, key=lambda candidate: candidate[0])
    return team, worker


# --- allocating ---------------------------------------------------------------------


@dataclass(frozen=True)
class Allocate:
    """Take a case, or move it to another worker (`reallocation_reason` set)."""

    team_id: str
    worker_id: UUID
    allocated_by: str
    allocated_at: datetime
    override_reason: str | None = None
    reallocation_reason: str | None = None


def practitioner(worker: Worker, team: Team) -> Practitioner:
    return Practitioner(
        worker_id=worker.worker_id,
        name=worker.name,
        role=worker.role,
        team_name=team.name,
        email=worker.email,
        phone=worker.phone,
        staff_client_id=worker.staff_client_id,
    )


def allocate(
    current: CaseAllocation, command: Allocate, registry: Registry, caseload: int
) -> CaseAllocated:
    """`caseload` is the number of cases the chosen worker holds now."""
    reallocating = command.reallocation_reason is not None
    if reallocating and current.worker_id is None:
        raise NotAllocated(f"case {current.case_id} has no worker yet: allocate it instead")
    if not reallocating and current.worker_id is not None:
        raise AlreadyAllocated(
            f"case {current.case_id} is allocated already: reallocate it to change its worker"
        )
    team = registry.teams.get(command.team_id)
    if team is None:
        raise InvalidCommand("team_id", f"no team {command.team_id} in the registry")
    worker = registry.worker(command.worker_id)
    if worker is None:
        raise InvalidCommand("worker_id", f"no worker {command.worker_id} in the registry")
    if worker.team != team.team_id:
        raise InvalidCommand("worker_id", f"{worker.name} is not in team {team.team_id}")
    if not worker.available:
        raise InvalidCommand("worker_id", f"{worker.name} is not taking cases")
    if worker.worker_id == current.worker_id:
        raise InvalidCommand("worker_id", f"{worker.name} is the case's worker already")
    if caseload >= worker.caseload_limit and command.override_reason is None:
        raise OverCapacity(worker, caseload)
    return CaseAllocated(
        case_id=current.case_id,
        family_id=current.family_id,
        locality=team.locality,
        team_id=team.team_id,
        lead_professional=practitioner(worker, team),
        allocated_at=command.allocated_at,
        allocated_by=command.allocated_by,
        is_reallocation=reallocating,
        reason=_reason(command, worker, caseload),
    )


def _reason(command: Allocate, worker: Worker, caseload: int) -> str | None:
    parts = []
    if command.reallocation_reason is not None:
        parts.append(command.reallocation_reason)
    # The override is part of the record of who decided what and why.
    if command.override_reason is not None and caseload >= worker.caseload_limit:
        parts.append(
            f"Over capacity ({caseload} of {worker.caseload_limit} cases), manager override: "
            f"{command.override_reason}"
        )
    return " ".join(parts) or None


def reallocate_caseload(
    cases: Sequence[tuple[CaseAllocation, CaseFacts]],
    leaving: UUID,
    target: tuple[str, UUID] | None,
    registry: Registry,
    caseloads: Mapping[str, int],
    *,
    reason: str,
    override_reason: str | None,
    by: str,
    at: datetime,
) -> list[CaseAllocated]:
    """Move every case of `leaving` to `target` (team, worker), or each to the worker
    `auto` would choose; all or nothing, so that no case is left without a worker.
    """
    loads = dict(caseloads)
    events = []
    for current, facts in cases:
        if target is None:
            team, worker = choose_worker(facts, registry, loads, at.date(), exclude=[leaving])
            team_id, worker_id = team.team_id, worker.worker_id
        else:
            team_id, worker_id = target
        command = Allocate(
            team_id=team_id,
            worker_id=worker_id,
            allocated_by=by,
            allocated_at=at,
            override_reason=override_reason,
            reallocation_reason=reason,
        )
        events.append(allocate(current, command, registry, loads.get(str(worker_id), 0)))
        loads[str(worker_id)] = loads.get(str(worker_id), 0) + 1
    return events


# --- the panel ----------------------------------------------------------------------


@dataclass(frozen=True)
class PackageItem:
    provider_id: str
    service_id: str
    start_date: date
    intensity: SupportIntensity


@dataclass(frozen=True)
class RecordDecision:
    panel_id: UUID
    package: tuple[PackageItem, ...]
    lead_professional_id: UUID
    review_date: date | None
    members_present: tuple[PanelMember, ...]
    decided_by: str
    decided_at: datetime


def add_months(start: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def record_decision(
    current: CaseAllocation,
    on_agenda: bool,
    command: RecordDecision,
    registry: Registry,
    places_taken: Mapping[tuple[str, str], int],
    review_default_months: int,
    review_maximum_months: int,
) -> list[EventData]:
    """`places_taken` counts the commissioned places in use, by (provider, service name)."""
    if not on_agenda or command.panel_id in current.decided_panels:
        raise NotOnAgenda(
            f"case {current.case_id} is not awaiting a decision on panel {command.panel_id}"
        )
    decided_on = authority_date(command.decided_at)
    review_date = command.review_date or add_months(decided_on, review_default_months)
    latest = add_months(decided_on, review_maximum_months)
    if not decided_on < review_date <= latest:
        raise InvalidCommand(
            "review_date", f"must be after {decided_on} and no later than {latest}"
        )
    package = _package(command.package, registry, places_taken)
    worker = registry.worker(command.lead_professional_id)
    if worker is None:
        raise InvalidCommand(
            "lead_professional.worker_id", f"no worker {command.lead_professional_id}"
        )
    if not worker.available:
        raise InvalidCommand("lead_professional.worker_id", f"{worker.name} is not taking cases")
    team = registry.teams[worker.team]
    events: list[EventData] = []
    if worker.worker_id != current.worker_id:
        # The panel changed (or named the first) lead professional: the caseloads move with it.
        events.append(
            CaseAllocated(
                case_id=current.case_id,
                family_id=current.family_id,
                locality=team.locality,
                team_id=team.team_id,
                lead_professional=practitioner(worker, team),
                allocated_at=command.decided_at,
                allocated_by=command.decided_by,
                is_reallocation=current.worker_id is not None,
                reason=f"Lead professional named by panel {command.panel_id}.",
            )
        )
    events.append(
        PanelDecisionRecorded(
            case_id=current.case_id,
            family_id=current.family_id,
            panel_id=command.panel_id,
            decided_at=command.decided_at,
            package=package,
            lead_professional=practitioner(worker, team),
            review_date=review_date,
            members_present=command.members_present,
        )
    )
    return events


def _package(
    items: Sequence[PackageItem],
    registry: Registry,
    places_taken: Mapping[tuple[str, str], int],
) -> tuple[SupportService, ...]:
    taken = dict(places_taken)
    package = []
    for index, item in enumerate(items):
        where = f"package[{index}]"
        provider = registry.providers.get(item.provider_id)
        if provider is None:
            raise InvalidCommand(f"{where}.provider_id", f"no provider {item.provider_id}")
        service = provider.service(item.service_id)
        if service is None or service.status != "active":
            raise InvalidCommand(
                f"{where}.service_id", f"{provider.name} offers no active {item.service_id}"
            )
        commissioned = provider.kind == "commissioned"
        key = (provider.provider_id, service.name)
        if commissioned and service.capacity is not None:
            if taken.get(key, 0) >= service.capacity:
                raise NoPlacesLeft(
                    f"{where}.service_id",
                    f"all {service.capacity} places of {service.name} ({provider.name}) are taken",
                )
            taken[key] = taken.get(key, 0) + 1
        package.append(
            SupportService(
                service=service.name,
                provider_id=provider.provider_id,
                start_date=item.start_date,
                intensity=item.intensity,
                commissioned=commissioned,
            )
        )
    return tuple(package)
