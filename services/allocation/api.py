"""Allocation's HTTP API: thin, it maps requests to the domain's decisions and read models."""

import json
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection, func, insert, select, update

from allocation import domain, registry
from allocation.projections import (
    URGENCY_RANK,
    allocation_cases,
    commissioned_places,
    panel_agenda,
    panel_decisions,
)
from allocation.registry import Locality, Provider, Registry, RegistryInconsistent, Team, Worker
from allocation.schemas import (
    AgendaItem,
    Allocation,
    AllocationQueue,
    AllocationRecorded,
    AllocationRequest,
    AuthorityRegistry,
    CaseAllocationView,
    CaseloadEntry,
    CaseloadReallocated,
    CaseloadReallocationRequest,
    Caseloads,
    DecisionRecorded,
    DecisionRequest,
    LeadProfessionalSummary,
    LocalityTimeliness,
    Panel,
    PanelList,
    PanelMemberIn,
    PanelRequest,
    ProviderCapacity,
    QueueStatus,
    ReallocationRequest,
    RegistryChange,
    RegistryView,
    ServiceCapacity,
    Timeliness,
)
from allocation.settings import AllocationSettings, current_settings
from allocation.tables import panels
from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.commands import CommandResult, run_command
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded, PanelMember
from hub.contracts.identifiers import Slug
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.pagination import InvalidCursor, after_position, decode_cursor, encode_cursor
from hub.http.problems import FieldError, Problem, problem_responses, problem_type
from hub.observability import current_trace_id
from hub.service import Runtime, UnitOfWork, runtime_of
from hub.tables import audit_log

router = APIRouter(prefix="/v1", tags=["allocation"])

OptionalSlug = Slug | None

T = TypeVar("T")


def staff(*scopes: str):
    """The caller, when a member of staff whose token carries every scope in `scopes`.

    Partners reach nothing here, whatever scopes their client was given.
    """
    scoped = require_scopes(*scopes)

    async def check(principal: Annotated[Principal, Depends(scoped)]) -> Principal:
        if principal.kind != "staff":
            raise Problem.forbidden("Only the authority's staff use the allocation service.")
        return principal

    return check


async def seeded_runtime(
    request: Request,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    settings: Annotated[AllocationSettings, Depends(current_settings)],
) -> Runtime:
    """The runtime, once the registry file is in a database that had no registry."""
    if not getattr(request.app.state, "registry_seeded", False):
        await runtime.write(
            lambda uow: registry.seed_if_empty(uow.conn, settings.registry_file, datetime.now(UTC))
        )
        request.app.state.registry_seeded = True
    return runtime


Settings = Annotated[AllocationSettings, Depends(current_settings)]
Hub = Annotated[Runtime, Depends(seeded_runtime)]
CaseId = Annotated[UUID, Path(description="The early help case (from triage or a step-down).")]

# --- errors -------------------------------------------------------------------------


def _invalid(field: str, message: str, code: str = "allocation_rule") -> Problem:
    return Problem.unprocessable(
        "The request does not fit the registry or the case.",
        title="Invalid request",
        errors=[FieldError(field=field, message=message, code=code)],
    )


def _translated(decide: Callable[[], T]) -> T:
    """Run a domain decision, answering its refusals as problems (so nothing is stored)."""
    try:
        return decide()
    except domain.InvalidCommand as exc:
        raise _invalid(exc.field, exc.message) from exc
    except domain.OverCapacity as exc:
        raise Problem.conflict(
            str(exc), title="Over capacity", type=problem_type("worker-over-capacity")
        ) from exc
    except domain.NoPlacesLeft as exc:
        raise Problem.conflict(
            str(exc),
            title="No places left",
            type=problem_type("provider-full"),
            extensions={"field": exc.field},
        ) from exc
    except domain.NoWorkerAvailable as exc:
        raise Problem.conflict(
            str(exc), title="No worker available", type=problem_type("no-worker-available")
        ) from exc
    except domain.NotOnAgenda as exc:
        raise Problem.conflict(
            str(exc), title="Not on the agenda", type=problem_type("case-not-on-agenda")
        ) from exc
    except domain.AllocationRuleBroken as exc:
        raise Problem.conflict(
            str(exc), title="Not possible now", type=problem_type("allocation-conflict")
        ) from exc


def _audit(conn: Connection, caller: Principal, action: str, kind: str, key: str) -> None:
    """A change to the registry or the panel calendar, in the audit log beside the reads."""
    conn.execute(
        insert(audit_log),
        {
            "at": datetime.now(UTC),
            "actor": caller.subject,
            "actor_kind": caller.kind,
            "action": action,
            "resource_type": kind,
            "resource_id": key,
            "trace_id": current_trace_id(),
        },
    )


# --- reading state inside a transaction ---------------------------------------------


def _case_row(conn: Connection, case_id: UUID) -> Any:
    return conn.execute(
        select(allocation_cases).where(allocation_cases.c.case_id == str(case_id))
    ).first()


def _facts(row: Any) -> domain.CaseFacts:
    return domain.CaseFacts(
        case_id=UUID(row.case_id),
        family_id=UUID(row.family_id),
        locality=row.locality,
        children_dates_of_birth=tuple(
            datetime.fromisoformat(d).date() for d in row.children_dates_of_birth.split(",") if d
        ),
        factors=tuple(f for f in row.concern_factors.split(",") if f),
    )


def _open_case(conn: Connection, case_id: UUID) -> Any:
    row = _case_row(conn, case_id)
    if row is None:
        raise Problem.not_found(f"No case {case_id} in the allocation queue.")
    if row.status == "closed":
        raise Problem.conflict(
            f"Case {case_id} is closed.", title="Closed", type=problem_type("case-closed")
        )
    return row


def _current(uow: UnitOfWork, row: Any) -> domain.CaseAllocation:
    stream = domain.stream_id(UUID(row.case_id))
    return domain.replay(
        UUID(row.case_id),
        UUID(row.family_id),
        (recorded.decode() for recorded in uow.read_stream(stream)),
    )


def _caseloads(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(allocation_cases.c.worker_id, func.count())
        .where(allocation_cases.c.status == "allocated")
        .group_by(allocation_cases.c.worker_id)
    ).all()
    return {worker_id: count for worker_id, count in rows}


def _check_capacity_after(
    conn: Connection, events: list[CaseAllocated], reg: Registry, override: str | None
) -> None:
    """Count again once the events are appended (and projected).

    Appends are serialised across processes (the store's lock), so a count taken
    after this append sees every competing allocation that committed before it.
    """
    if override is not None:
        return
    loads = _caseloads(conn)
    for event in events:
        worker = reg.worker(event.lead_professional.worker_id)
        if worker is not None and loads.get(str(worker.worker_id), 0) > worker.caseload_limit:
            raise domain.OverCapacity(worker, loads[str(worker.worker_id)] - 1)


def _recorded(event: CaseAllocated) -> AllocationRecorded:
    return AllocationRecorded(
        case_id=event.case_id,
        family_id=event.family_id,
        locality=event.locality,
        team_id=event.team_id,
        lead_professional=event.lead_professional,
        allocated_at=event.allocated_at,
        is_reallocation=event.is_reallocation,
        reason=event.reason,
    )


def _needs_override_scope(body: AllocationRequest, caller: Principal) -> None:
    if body.override_reason is not None and "allocations:override" not in caller.scopes:
        raise Problem.forbidden(
            "Allocating over a worker's caseload limit needs the scope allocations:override.",
            extensions={"required_scopes": ["allocations:override"]},
        )


def _target(
    body: AllocationRequest, facts: domain.CaseFacts, reg: Registry, loads: dict, now: datetime
) -> tuple[str, UUID]:
    if body.auto:
        team, worker = domain.choose_worker(facts, reg, loads, now.date())
        return team.team_id, worker.worker_id
    assert body.team_id is not None and body.worker_id is not None  # the schema's rule
    return body.team_id, body.worker_id


# --- the queue ----------------------------------------------------------------------


@router.get(
    "/allocations",
    response_model=AllocationQueue,
    responses=problem_responses(401, 403, 422),
    summary="The allocation queue, and cases by status",
)
async def list_allocations(
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:read"))],
    now: Now,
    status: QueueStatus = QueueStatus.UNALLOCATED,
    locality: Annotated[OptionalSlug, Query(description="Only this locality's cases.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> AllocationQueue:
    """Most urgent first (immediate, urgent, routine), then longest waiting, a page at a time."""
    table = allocation_cases
    query = select(table).where(table.c.status == status.value)
    if locality is not None:
        query = query.where(table.c.locality == locality)
    if cursor is not None:
        rank, queued_at, after = _decode_cursor(cursor, status)
        query = query.where(
            after_position(
                table.c.urgency_rank, table.c.queued_at, table.c.case_id, rank, queued_at, after
            )
        )
    query = query.order_by(table.c.urgency_rank, table.c.queued_at, table.c.case_id)
    rows = await runtime.read(lambda conn: conn.execute(query.limit(limit + 1)).all())
    await record_read(runtime, caller, "allocation_list", status.value)
    page = rows[:limit]
    return AllocationQueue(
        status=status,
        items=[_allocation(row, now) for row in page],
        next_cursor=_encode_cursor(status, page[-1]) if len(rows) > limit else None,
    )


def _allocation(row: Any, now: datetime) -> Allocation:
    until = row.first_allocated_at or now
    return Allocation(
        case_id=row.case_id,
        family_id=row.family_id,
        status=row.status,
        source=row.source,
        locality=row.locality,
        urgency=row.urgency,
        queued_at=row.queued_at,
        waiting_seconds=max(0, int((until - row.queued_at).total_seconds())),
        team_id=row.team_id,
        worker_id=row.worker_id,
        lead_professional_name=row.lead_professional_name,
        allocated_at=row.allocated_at,
    )


def _encode_cursor(status: QueueStatus, row: Any) -> str:
    return encode_cursor(status.value, row.urgency_rank, row.queued_at, row.case_id)


def _decode_cursor(cursor: str, status: QueueStatus) -> tuple[int, datetime, str]:
    invalid = _invalid("query.cursor", "not a cursor this list gave out", "cursor")
    try:
        listed, rank, queued, after = decode_cursor(cursor)
    except InvalidCursor as exc:
        raise invalid from exc
    if listed != status.value or rank not in URGENCY_RANK.values():
        raise invalid
    return rank, queued, after


# --- allocating ---------------------------------------------------------------------


@router.get(
    "/cases/{case_id}/allocation",
    response_model=CaseAllocationView,
    responses=problem_responses(401, 403, 404),
    summary="Who holds a case, and what its panels decided",
)
async def get_allocation(
    case_id: CaseId,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:read"))],
    now: Now,
) -> CaseAllocationView:
    def read(conn: Connection):
        row = _case_row(conn, case_id)
        decisions = conn.execute(
            select(panel_decisions)
            .where(panel_decisions.c.case_id == str(case_id))
            .order_by(panel_decisions.c.decided_at)
        ).all()
        return row, decisions

    row, decisions = await runtime.read(read)
    if row is None:
        raise Problem.not_found(f"No case {case_id} in the allocation queue.")
    await record_read(runtime, caller, "case", str(case_id))
    return CaseAllocationView(
        allocation=_allocation(row, now), panel_decisions=[_decision(d) for d in decisions]
    )


@router.post(
    "/cases/{case_id}/allocation",
    status_code=201,
    response_model=AllocationRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Allocate a case to a team and worker, or automatically",
)
async def allocate_case(
    case_id: CaseId,
    body: Annotated[AllocationRequest, Body()],
    request: Request,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The worker becomes the family's lead professional. A worker at their caseload
    limit is refused (409) unless a manager gives `override_reason`. A case allocated
    already is a 409: reallocate it instead.
    """
    _needs_override_scope(body, caller)

    def allocate(uow: UnitOfWork) -> CommandResult:
        row = _open_case(uow.conn, case_id)
        reg, loads = registry.load(uow.conn), _caseloads(uow.conn)
        current, facts = _current(uow, row), _facts(row)

        def decide() -> CaseAllocated:
            team_id, worker_id = _target(body, facts, reg, loads, now)
            command = domain.Allocate(
                team_id=team_id,
                worker_id=worker_id,
                allocated_by=caller.subject,
                allocated_at=now,
                override_reason=body.override_reason,
            )
            event = domain.allocate(current, command, reg, loads.get(str(worker_id), 0))
            uow.append(domain.stream_id(case_id), current.version, [event], actor=caller.subject)
            _check_capacity_after(uow.conn, [event], reg, body.override_reason)
            return event

        event = _translated(decide)
        return CommandResult(201, _recorded(event), {"Location": f"/v1/cases/{case_id}/allocation"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=body,
        command=allocate,
    )


@router.post(
    "/cases/{case_id}/reallocation",
    response_model=AllocationRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Move an allocated case to another worker",
)
async def reallocate_case(
    case_id: CaseId,
    body: Annotated[ReallocationRequest, Body()],
    request: Request,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The same rules as allocating; the case keeps its worker until the new one is recorded."""
    _needs_override_scope(body, caller)

    def reallocate(uow: UnitOfWork) -> CommandResult:
        row = _open_case(uow.conn, case_id)
        reg, loads = registry.load(uow.conn), _caseloads(uow.conn)
        current, facts = _current(uow, row), _facts(row)

        def decide() -> CaseAllocated:
            if body.auto:
                team, worker = domain.choose_worker(
                    facts,
                    reg,
                    loads,
                    now.date(),
                    exclude=[current.worker_id] if current.worker_id else [],
                )
                team_id, worker_id = team.team_id, worker.worker_id
            else:
                team_id, worker_id = _target(body, facts, reg, loads, now)
            command = domain.Allocate(
                team_id=team_id,
                worker_id=worker_id,
                allocated_by=caller.subject,
                allocated_at=now,
                override_reason=body.override_reason,
                reallocation_reason=body.reason,
            )
            event = domain.allocate(current, command, reg, loads.get(str(worker_id), 0))
            uow.append(domain.stream_id(case_id), current.version, [event], actor=caller.subject)
            _check_capacity_after(uow.conn, [event], reg, body.override_reason)
            return event

        event = _translated(decide)
        return CommandResult(200, _recorded(event), {"Location": f"/v1/cases/{case_id}/allocation"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=body,
        command=reallocate,
    )


@router.post(
    "/workers/{worker_id}/caseload/reallocation",
    response_model=CaseloadReallocated,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Move a whole caseload (a leaver, a long absence)",
)
async def reallocate_caseload(
    worker_id: UUID,
    body: Annotated[CaseloadReallocationRequest, Body()],
    request: Request,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:write"))],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every open case of the worker moves, each with its own `CaseAllocated`, to one named
    worker or (`auto`) each to the best-matched worker with spare capacity. All or nothing:
    if one case cannot be placed, none moves (409) and no case is left without a worker.
    """
    _needs_override_scope(body, caller)

    def reallocate(uow: UnitOfWork) -> CommandResult:
        reg = registry.load(uow.conn)
        if reg.worker(worker_id) is None:
            raise Problem.not_found(f"No worker {worker_id} in the registry.")
        rows = uow.conn.execute(
            select(allocation_cases)
            .where(
                allocation_cases.c.worker_id == str(worker_id),
                allocation_cases.c.status == "allocated",
            )
            .order_by(allocation_cases.c.urgency_rank, allocation_cases.c.queued_at)
        ).all()
        cases = [(_current(uow, row), _facts(row)) for row in rows]
        target = None if body.auto else (body.team_id, body.worker_id)

        def decide() -> list[CaseAllocated]:
            events = domain.reallocate_caseload(
                cases,
                worker_id,
                target,  # type: ignore[arg-type]
                reg,
                _caseloads(uow.conn),
                reason=body.reason,
                override_reason=body.override_reason,
                by=caller.subject,
                at=now,
            )
            for (current, _), event in zip(cases, events, strict=True):
                uow.append(
                    domain.stream_id(current.case_id),
                    current.version,
                    [event],
                    actor=caller.subject,
                )
            _check_capacity_after(uow.conn, events, reg, body.override_reason)
            return events

        events = _translated(decide)
        return CommandResult(
            200, CaseloadReallocated(worker_id=worker_id, moved=[_recorded(e) for e in events])
        )

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=body,
        command=reallocate,
    )


# --- caseloads and performance ------------------------------------------------------


@router.get(
    "/workers/{worker_id}/caseload",
    response_model=list[Allocation],
    responses=problem_responses(401, 403, 404),
    summary="The open cases a worker holds",
)
async def worker_caseload(
    worker_id: UUID,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:read"))],
    now: Now,
) -> list[Allocation]:
    def read(conn: Connection):
        return registry.load(conn), conn.execute(
            select(allocation_cases)
            .where(
                allocation_cases.c.worker_id == str(worker_id),
                allocation_cases.c.status == "allocated",
            )
            .order_by(allocation_cases.c.allocated_at)
        ).all()

    reg, rows = await runtime.read(read)
    if reg.worker(worker_id) is None:
        raise Problem.not_found(f"No worker {worker_id} in the registry.")
    await record_read(runtime, caller, "caseload", str(worker_id))
    return [_allocation(row, now) for row in rows]


@router.get(
    "/caseloads",
    response_model=Caseloads,
    responses=problem_responses(401, 403, 422),
    summary="Cases held by each worker and team, against their limits",
)
async def caseloads(
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:read"))],
    team_id: Annotated[OptionalSlug, Query(description="Only this team's workers.")] = None,
) -> Caseloads:
    reg, loads = await runtime.read(lambda conn: (registry.load(conn), _caseloads(conn)))
    workers = [w for w in reg.workers.values() if team_id is None or w.team == team_id]
    entries = [
        CaseloadEntry(
            worker_id=w.worker_id,
            name=w.name,
            team_id=w.team,
            available=w.available,
            caseload=loads.get(str(w.worker_id), 0),
            caseload_limit=w.caseload_limit,
            spare=max(0, w.caseload_limit - loads.get(str(w.worker_id), 0)),
        )
        for w in sorted(workers, key=lambda w: (w.team, w.name))
    ]
    teams: dict[str, int] = {}
    for entry in entries:
        teams[entry.team_id] = teams.get(entry.team_id, 0) + entry.caseload
    return Caseloads(workers=entries, teams=teams)


@router.get(
    "/allocations/timeliness",
    response_model=Timeliness,
    responses=problem_responses(401, 403),
    summary="Time from triage or step-down to first allocation, per locality",
)
async def timeliness(
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("allocations:read"))],
) -> Timeliness:
    rows = await runtime.read(
        lambda conn: conn.execute(
            select(
                allocation_cases.c.locality,
                allocation_cases.c.queued_at,
                allocation_cases.c.first_allocated_at,
            )
        ).all()
    )
    by_locality: dict[str, tuple[list[float], list[int]]] = {}
    for row in rows:
        hours, waiting = by_locality.setdefault(row.locality or "unknown", ([], [0]))
        if row.first_allocated_at is None:
            waiting[0] += 1
        else:
            hours.append((row.first_allocated_at - row.queued_at).total_seconds() / 3600)
    return Timeliness(
        localities=[
            LocalityTimeliness(
                locality=locality,
                allocated=len(hours),
                waiting=waiting[0],
                median_hours_to_allocation=round(statistics.median(hours), 2) if hours else None,
                longest_hours_to_allocation=round(max(hours), 2) if hours else None,
            )
            for locality, (hours, waiting) in sorted(by_locality.items())
        ]
    )


# --- the registry -------------------------------------------------------------------


@router.get(
    "/registry",
    response_model=RegistryView,
    responses=problem_responses(401, 403),
    summary="Localities, teams, workers and providers of every authority",
    tags=["registry"],
)
async def get_registry(
    runtime: Hub, caller: Annotated[Principal, Depends(staff("allocations:read"))]
) -> RegistryView:
    reg = await runtime.read(registry.load)
    return RegistryView(
        authorities=[
            AuthorityRegistry(
                authority_id=authority_id,
                name=name,
                localities=_of(reg, "locality", authority_id),
                teams=_of(reg, "team", authority_id),
                workers=_of(reg, "worker", authority_id),
                providers=_of(reg, "provider", authority_id),
            )
            for authority_id, name in sorted(reg.authorities.items())
        ]
    )


def _of(reg: Registry, kind: str, authority_id: str) -> list[Any]:
    return [
        entry
        for key, entry in sorted(reg.entries(kind).items())
        if reg.authority_of[(kind, key)] == authority_id
    ]


def _registry_writer(kind: str, model: type[BaseModel], plural: str):
    async def put_entry(
        entry_id: str,
        entry: Annotated[model, Body()],  # type: ignore[valid-type]
        runtime: Hub,
        caller: Annotated[Principal, Depends(staff("registry:write"))],
        authority_id: Annotated[
            OptionalSlug,
            Query(description="The authority of a new entry (an existing one keeps its own)."),
        ] = None,
    ) -> RegistryChange:
        if registry.entry_id(kind, entry) != entry_id:
            raise _invalid(f"{kind}_id", f"must be {entry_id}, as in the path", "id_mismatch")
        now = datetime.now(UTC)

        def save(uow: UnitOfWork) -> RegistryChange:
            reg = registry.load(uow.conn)
            owner = reg.authority_of.get((kind, entry_id), authority_id)
            if owner is None or owner not in reg.authorities:
                raise _invalid(
                    "query.authority_id", "name the authority of a new entry", "authority"
                )
            try:
                reg.with_entry(kind, entry, owner)
            except RegistryInconsistent as exc:
                raise Problem.unprocessable(
                    "The change leaves the registry inconsistent.",
                    title="Invalid request",
                    errors=[
                        FieldError(field=field, message=message, code="registry_reference")
                        for field, message in exc.problems
                    ],
                ) from exc
            registry.save_entry(uow.conn, kind, entry, owner, caller.subject, now)
            _audit(uow.conn, caller, "registry_change", kind, entry_id)
            return RegistryChange(
                kind=kind,
                entry_id=entry_id,
                authority_id=owner,
                updated_at=now,
                updated_by=caller.subject,
            )

        return await runtime.write(save)

    router.put(
        f"/registry/{plural}/{{entry_id}}",
        name=f"put_{kind}",
        response_model=RegistryChange,
        responses=problem_responses(401, 403, 413, 422),
        summary=f"Add or replace a {kind}",
        tags=["registry"],
    )(put_entry)


for _kind, _model, _plural in (
    ("locality", Locality, "localities"),
    ("team", Team, "teams"),
    ("worker", Worker, "workers"),
    ("provider", Provider, "providers"),
):
    _registry_writer(_kind, _model, _plural)


# --- providers ----------------------------------------------------------------------


@router.get(
    "/providers/capacity",
    response_model=ProviderCapacity,
    responses=problem_responses(401, 403),
    summary="Places each provider's services have, and how many panels have taken",
    tags=["registry"],
)
async def provider_capacity(
    runtime: Hub, caller: Annotated[Principal, Depends(staff("allocations:read"))]
) -> ProviderCapacity:
    reg, taken = await runtime.read(lambda conn: (registry.load(conn), _places_taken(conn)))
    services = []
    for provider in sorted(reg.providers.values(), key=lambda p: p.provider_id):
        for service in provider.services:
            used = taken.get((provider.provider_id, service.name), 0)
            services.append(
                ServiceCapacity(
                    provider_id=provider.provider_id,
                    provider_name=provider.name,
                    kind=provider.kind,
                    service_id=service.service_id,
                    service=service.name,
                    capacity=service.capacity,
                    taken=used,
                    remaining=None if service.capacity is None else max(0, service.capacity - used),
                )
            )
    return ProviderCapacity(services=services)


def _places_taken(conn: Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        select(commissioned_places.c.provider_id, commissioned_places.c.service, func.count())
        .where(commissioned_places.c.released_at.is_(None))
        .group_by(commissioned_places.c.provider_id, commissioned_places.c.service)
    ).all()
    return {(provider, service): count for provider, service, count in rows}


# --- panels -------------------------------------------------------------------------


def _panel(row: Any, agenda: list[Any] = ()) -> Panel:
    return Panel(
        panel_id=row.panel_id,
        locality=row.locality,
        name=row.name,
        meets_on=row.meets_on,
        members=json.loads(row.members),
        agenda=[
            AgendaItem(
                case_id=item.case_id,
                family_id=item.family_id,
                assessment_completed_at=item.completed_at,
                status=item.status,
            )
            for item in agenda
        ],
    )


def _panels_with_agendas(conn: Connection, *conditions: Any) -> list[Panel]:
    """Panels and their agendas in one read: the list, the detail and the scheduling answer
    all come from here, so they cannot disagree about a panel."""
    rows = conn.execute(
        select(panels).where(*conditions).order_by(panels.c.meets_on, panels.c.panel_id)
    ).all()
    agendas: dict[str, list[Any]] = {row.panel_id: [] for row in rows}
    if agendas:
        for item in conn.execute(
            select(panel_agenda)
            .where(panel_agenda.c.panel_id.in_(list(agendas)))
            .order_by(panel_agenda.c.completed_at, panel_agenda.c.case_id)
        ):
            agendas[item.panel_id].append(item)
    return [_panel(row, agendas[row.panel_id]) for row in rows]


@router.post(
    "/panels",
    status_code=201,
    response_model=Panel,
    responses=problem_responses(401, 403, 409, 413, 422),
    summary="Schedule a locality's panel meeting",
    tags=["panels"],
)
async def schedule_panel(
    body: Annotated[PanelRequest, Body()],
    request: Request,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("panels:write"))],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Cases of the locality waiting for a panel (their assessment done on or before the
    meeting day) join its agenda.
    """

    def schedule(uow: UnitOfWork) -> CommandResult:
        if body.locality not in registry.load(uow.conn).localities:
            raise _invalid("locality", f"no locality {body.locality} in the registry")
        panel_id = str(uuid4())
        uow.conn.execute(
            insert(panels),
            {
                "panel_id": panel_id,
                "locality": body.locality,
                "name": body.name,
                "meets_on": body.meets_on,
                "members": json.dumps([m.model_dump() for m in body.members]),
                "created_at": datetime.now(UTC),
                "created_by": caller.subject,
            },
        )
        waiting = uow.conn.execute(
            select(panel_agenda).where(
                panel_agenda.c.locality == body.locality,
                panel_agenda.c.panel_id.is_(None),
                panel_agenda.c.status == "awaiting",
            )
        ).all()
        for item in waiting:
            if item.completed_at.date() <= body.meets_on:
                uow.conn.execute(
                    update(panel_agenda)
                    .where(
                        panel_agenda.c.case_id == item.case_id,
                        panel_agenda.c.assessment_id == item.assessment_id,
                    )
                    .values(panel_id=panel_id)
                )
        _audit(uow.conn, caller, "panel_scheduled", "panel", panel_id)
        (panel,) = _panels_with_agendas(uow.conn, panels.c.panel_id == panel_id)
        return CommandResult(201, panel, {"Location": f"/v1/panels/{panel_id}"})

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=body,
        command=schedule,
    )


@router.get(
    "/panels",
    response_model=PanelList,
    responses=problem_responses(401, 403),
    summary="Panel meetings, soonest first",
    tags=["panels"],
)
async def list_panels(
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("panels:read"))],
    locality: Annotated[OptionalSlug, Query()] = None,
) -> PanelList:
    conditions = [] if locality is None else [panels.c.locality == locality]
    found = await runtime.read(lambda conn: _panels_with_agendas(conn, *conditions))
    return PanelList(panels=found)


@router.get(
    "/panels/{panel_id}",
    response_model=Panel,
    responses=problem_responses(401, 403, 404),
    summary="A panel meeting with its agenda",
    tags=["panels"],
)
async def get_panel(
    panel_id: UUID,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("panels:read"))],
) -> Panel:
    found = await runtime.read(
        lambda conn: _panels_with_agendas(conn, panels.c.panel_id == str(panel_id))
    )
    if not found:
        raise Problem.not_found(f"No panel {panel_id}.")
    await record_read(runtime, caller, "panel_agenda", str(panel_id))
    return found[0]


@router.post(
    "/panels/{panel_id}/decisions",
    status_code=201,
    response_model=DecisionRecorded,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Record the panel's decision on a case on its agenda",
    tags=["panels"],
)
async def record_decision(
    panel_id: UUID,
    body: Annotated[DecisionRequest, Body()],
    request: Request,
    runtime: Hub,
    caller: Annotated[Principal, Depends(staff("panels:write"))],
    settings: Annotated[AllocationSettings, Depends(current_settings)],
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The package of support, the lead professional (confirmed, or changed: then the case
    moves to them) and the review date. Each commissioned service takes a place from its
    provider; with none left the decision is refused (409). A case not awaiting this
    panel's decision is a 409.
    """

    def decide_on(uow: UnitOfWork) -> CommandResult:
        panel = uow.conn.execute(select(panels).where(panels.c.panel_id == str(panel_id))).first()
        if panel is None:
            raise Problem.not_found(f"No panel {panel_id}.")
        row = _case_row(uow.conn, body.case_id)
        if row is None:
            raise _invalid("case_id", f"no case {body.case_id} in the allocation queue")
        on_agenda = (
            uow.conn.execute(
                select(panel_agenda.c.case_id).where(
                    panel_agenda.c.case_id == str(body.case_id),
                    panel_agenda.c.panel_id == str(panel_id),
                    panel_agenda.c.status == "awaiting",
                )
            ).first()
            is not None
        )
        reg, current = registry.load(uow.conn), _current(uow, row)
        command = domain.RecordDecision(
            panel_id=panel_id,
            package=tuple(
                domain.PackageItem(
                    provider_id=item.provider_id,
                    service_id=item.service_id,
                    start_date=item.start_date,
                    intensity=item.intensity,
                )
                for item in body.package
            ),
            lead_professional_id=body.lead_professional.worker_id,
            review_date=body.review_date,
            members_present=tuple(PanelMember(**m.model_dump()) for m in body.members_present),
            decided_by=caller.subject,
            decided_at=now,
        )

        def decide() -> PanelDecisionRecorded:
            events = domain.record_decision(
                current,
                on_agenda,
                command,
                reg,
                _places_taken(uow.conn),
                settings.review_default_months,
                settings.review_maximum_months,
            )
            uow.append(
                domain.stream_id(body.case_id), current.version, events, actor=caller.subject
            )
            _check_places_after(uow.conn, reg, events[-1])
            return events[-1]

        decision = _translated(decide)
        return CommandResult(
            201,
            DecisionRecorded(
                panel_id=panel_id,
                case_id=decision.case_id,
                family_id=decision.family_id,
                decided_at=decision.decided_at,
                package=[item.model_dump(mode="json") for item in decision.package],
                lead_professional=LeadProfessionalSummary(
                    worker_id=decision.lead_professional.worker_id,
                    name=decision.lead_professional.name,
                ),
                review_date=decision.review_date,
                members_present=[PanelMemberIn(**m.model_dump()) for m in decision.members_present],
            ),
            {"Location": f"/v1/cases/{decision.case_id}/allocation"},
        )

    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=idempotency_key,
        payload=body,
        command=decide_on,
    )


def _check_places_after(conn: Connection, reg: Registry, decision: PanelDecisionRecorded) -> None:
    """Count places again after the append, as `_check_capacity_after` counts cases."""
    taken = _places_taken(conn)
    for index, item in enumerate(decision.package):
        provider = reg.providers[item.provider_id]
        service = next(s for s in provider.services if s.name == item.service)
        if (
            service.capacity is not None
            and taken.get((provider.provider_id, service.name), 0) > service.capacity
        ):
            raise domain.NoPlacesLeft(
                f"package[{index}].service_id",
                f"all {service.capacity} places of {service.name} are taken",
            )


def _decision(row: Any) -> DecisionRecorded:
    return DecisionRecorded(
        panel_id=UUID(row.panel_id),
        case_id=UUID(row.case_id),
        family_id=UUID(row.family_id),
        decided_at=row.decided_at,
        package=json.loads(row.package),
        lead_professional=LeadProfessionalSummary(
            worker_id=UUID(row.worker_id), name=row.lead_professional_name
        ),
        review_date=row.review_date,
        members_present=json.loads(row.members_present),
    )
