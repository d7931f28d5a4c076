"""Allocation's write side: each command a function of a `CommandContext`, no HTTP.

A command finds its targets through `queries` with the caller's scope, so a
case, worker or panel outside it is refused as not found; the registry and the
panel calendar change only within the caller's teams and localities.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from uuid import UUID, uuid4

from sqlalchemy import Connection, insert, update

from allocation import domain, queries, registry
from allocation.projections import panel_agenda
from allocation.registry import Registry, RegistryInconsistent
from allocation.schemas import (
    AllocationRecorded,
    AllocationRequest,
    CaseloadReallocated,
    CaseloadReallocationRequest,
    DecisionRecorded,
    DecisionRequest,
    LeadProfessionalSummary,
    PanelMemberIn,
    PanelRequest,
    ReallocationRequest,
    RegistryChange,
)
from allocation.tables import panels
from hub.commands import CommandContext, CommandResult
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded, PanelMember
from hub.refusals import Conflict, Forbidden, Invalid, NotFound, RefusedField
from hub.scope import Scope
from hub.service import UnitOfWork

OVERRIDE = "allocations:override"


def seed_registry(uow: UnitOfWork, registry_file: Path, now: datetime) -> None:
    """The registry file, into a database that has no registry yet."""
    registry.seed_if_empty(uow.conn, registry_file, now)


# --- allocating -------------------------------------------------------------------------


def _needs_override_permission(scope: Scope, override_reason: str | None) -> None:
    if override_reason is not None and not scope.may(OVERRIDE):
        raise Forbidden(
            "Allocating over a worker's caseload limit needs the scope allocations:override.",
            extensions={"required_scopes": [OVERRIDE]},
        )


def _open_case(ctx: CommandContext, case_id: UUID):
    row = queries.case_row(ctx.conn, ctx.scope, case_id)
    if row is None:
        raise queries.no_case(case_id)
    if row.status == "closed":
        raise Conflict(f"Case {case_id} is closed.", title="Closed", problem="case-closed")
    return row


def _current(ctx: CommandContext, row) -> domain.CaseAllocation:
    stream = domain.stream_id(UUID(row.case_id))
    return domain.replay(
        UUID(row.case_id),
        UUID(row.family_id),
        (recorded.decode() for recorded in ctx.read_stream(stream)),
    )


def _within_scope(ctx: CommandContext, reg: Registry, team_id: str) -> None:
    """A named team must be one the caller may act for."""
    if not queries.team_in(ctx.scope, reg, team_id):
        raise domain.InvalidCommand("team_id", f"{team_id} is not one of your teams or localities")


def _check_capacity_after(
    conn: Connection, events: list[CaseAllocated], reg: Registry, override: str | None
) -> None:
    """Count again once the events are appended (and projected).

    Appends are serialised across processes (the store's lock), so a count taken
    after this append sees every competing allocation that committed before it.
    """
    if override is not None:
        return
    loads = queries.caseloads_by_worker(conn)
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


def allocate(ctx: CommandContext, case_id: UUID, body: AllocationRequest) -> CommandResult:
    """The worker becomes the family's lead professional."""
    _needs_override_permission(ctx.scope, body.override_reason)
    row = _open_case(ctx, case_id)
    reg, loads = registry.load(ctx.conn), queries.caseloads_by_worker(ctx.conn)
    current, facts = _current(ctx, row), queries.facts_of(row)
    if body.auto:
        team, worker = domain.choose_worker(facts, reg, loads, ctx.now.date())
        team_id, worker_id = team.team_id, worker.worker_id
    else:
        assert body.team_id is not None and body.worker_id is not None  # the schema's rule
        team_id, worker_id = body.team_id, body.worker_id
        _within_scope(ctx, reg, team_id)
    command = domain.Allocate(
        team_id=team_id,
        worker_id=worker_id,
        allocated_by=ctx.scope.subject,
        allocated_at=ctx.now,
        override_reason=body.override_reason,
    )
    event = domain.allocate(current, command, reg, loads.get(str(worker_id), 0))
    ctx.append(domain.stream_id(case_id), current.version, [event])
    _check_capacity_after(ctx.conn, [event], reg, body.override_reason)
    return CommandResult(201, _recorded(event), {"Location": f"/v1/cases/{case_id}/allocation"})


def reallocate(ctx: CommandContext, case_id: UUID, body: ReallocationRequest) -> CommandResult:
    """The same rules as allocating; the case keeps its worker until the new one is recorded."""
    _needs_override_permission(ctx.scope, body.override_reason)
    row = _open_case(ctx, case_id)
    reg, loads = registry.load(ctx.conn), queries.caseloads_by_worker(ctx.conn)
    current, facts = _current(ctx, row), queries.facts_of(row)
    if body.auto:
        exclude = [current.worker_id] if current.worker_id else []
        team, worker = domain.choose_worker(facts, reg, loads, ctx.now.date(), exclude=exclude)
        team_id, worker_id = team.team_id, worker.worker_id
    else:
        assert body.team_id is not None and body.worker_id is not None  # the schema's rule
        team_id, worker_id = body.team_id, body.worker_id
        _within_scope(ctx, reg, team_id)
    command = domain.Allocate(
        team_id=team_id,
        worker_id=worker_id,
        allocated_by=ctx.scope.subject,
        allocated_at=ctx.now,
        override_reason=body.override_reason,
        reallocation_reason=body.reason,
    )
    event = domain.allocate(current, command, reg, loads.get(str(worker_id), 0))
    ctx.append(domain.stream_id(case_id), current.version, [event])
    _check_capacity_after(ctx.conn, [event], reg, body.override_reason)
    return CommandResult(200, _recorded(event), {"Location": f"/v1/cases/{case_id}/allocation"})


def reallocate_caseload(
    ctx: CommandContext, worker_id: UUID, body: CaseloadReallocationRequest
) -> CommandResult:
    """Every open case of the worker moves; all or nothing."""
    _needs_override_permission(ctx.scope, body.override_reason)
    reg = registry.load(ctx.conn)
    if queries.worker_in(ctx.scope, reg, worker_id) is None:
        raise queries.no_worker(worker_id)
    if not body.auto:
        assert body.team_id is not None  # the schema's rule
        _within_scope(ctx, reg, body.team_id)
    rows = queries.allocated_cases_of(ctx.conn, worker_id)
    cases = [(_current(ctx, row), queries.facts_of(row)) for row in rows]
    target = None if body.auto else (body.team_id, body.worker_id)
    events = domain.reallocate_caseload(
        cases,
        worker_id,
        target,  # type: ignore[arg-type]
        reg,
        queries.caseloads_by_worker(ctx.conn),
        reason=body.reason,
        override_reason=body.override_reason,
        by=ctx.scope.subject,
        at=ctx.now,
    )
    for (current, _), event in zip(cases, events, strict=True):
        ctx.append(domain.stream_id(current.case_id), current.version, [event])
    _check_capacity_after(ctx.conn, events, reg, body.override_reason)
    return CommandResult(
        200, CaseloadReallocated(worker_id=worker_id, moved=[_recorded(e) for e in events])
    )


# --- the registry -----------------------------------------------------------------------


def _registry_entry_in_scope(scope: Scope, reg: Registry, kind: str, entry) -> bool:
    """Managers limited to localities or teams change only their own teams' entries."""
    if scope.authority_wide:
        return True
    if kind == "worker":
        return queries.team_in(scope, reg, entry.team)
    if kind == "team":
        return entry.team_id in scope.teams or entry.locality in scope.localities
    if kind == "locality":
        return entry.locality_id in scope.localities
    return True  # providers serve every locality: any registry editor keeps their places


def put_registry_entry(
    ctx: CommandContext, kind: str, entry_id: str, entry, authority_id: str | None
) -> CommandResult:
    """Add or replace a locality, team, worker or provider, within the caller's scope."""
    if registry.entry_id(kind, entry) != entry_id:
        raise domain.InvalidCommand(
            f"{kind}_id", f"must be {entry_id}, as in the path", "id_mismatch"
        )
    reg = registry.load(ctx.conn)
    existing = reg.entries(kind).get(entry_id)
    if existing is not None and not _registry_entry_in_scope(ctx.scope, reg, kind, existing):
        raise NotFound(f"No {kind} {entry_id} you may change.", resource=(kind, entry_id))
    if not _registry_entry_in_scope(ctx.scope, reg, kind, entry):
        field = {"worker": "team", "team": "locality"}.get(kind, f"{kind}_id")
        raise domain.InvalidCommand(field, "not one of your teams or localities", "scope")
    owner = reg.authority_of.get((kind, entry_id), authority_id)
    if owner is None or owner not in reg.authorities:
        raise domain.InvalidCommand(
            "query.authority_id", "name the authority of a new entry", "authority"
        )
    try:
        reg.with_entry(kind, entry, owner)
    except RegistryInconsistent as exc:
        raise Invalid(
            "The change leaves the registry inconsistent.",
            errors=[
                RefusedField(field, message, "registry_reference")
                for field, message in exc.problems
            ],
        ) from exc
    registry.save_entry(ctx.conn, kind, entry, owner, ctx.scope.subject, ctx.now)
    ctx.audit("registry_change", kind, entry_id)
    change = RegistryChange(
        kind=kind,
        entry_id=entry_id,
        authority_id=owner,
        updated_at=ctx.now,
        updated_by=ctx.scope.subject,
    )
    return CommandResult(200, change)


# --- panels -----------------------------------------------------------------------------


def schedule_panel(ctx: CommandContext, body: PanelRequest) -> CommandResult:
    """Cases of the locality waiting for a panel (assessed by the meeting day) join it."""
    if body.locality not in registry.load(ctx.conn).localities:
        raise domain.InvalidCommand("locality", f"no locality {body.locality} in the registry")
    if not ctx.scope.covers_locality(body.locality):
        raise domain.InvalidCommand("locality", "not one of your localities", "scope")
    panel_id = str(uuid4())
    ctx.conn.execute(
        insert(panels),
        {
            "panel_id": panel_id,
            "locality": body.locality,
            "name": body.name,
            "meets_on": body.meets_on,
            "members": json.dumps([m.model_dump() for m in body.members]),
            "created_at": ctx.now,
            "created_by": ctx.scope.subject,
        },
    )
    for item in queries.waiting_for_panel(ctx.conn, body.locality):
        if item.completed_at.date() <= body.meets_on:
            ctx.conn.execute(
                update(panel_agenda)
                .where(
                    panel_agenda.c.case_id == item.case_id,
                    panel_agenda.c.assessment_id == item.assessment_id,
                )
                .values(panel_id=panel_id)
            )
    ctx.audit("panel_scheduled", "panel", panel_id)
    view = queries.panel_in_transaction(ctx.conn, ctx.scope, panel_id)
    return CommandResult(201, view, {"Location": f"/v1/panels/{panel_id}"})


def record_decision(
    ctx: CommandContext,
    panel_id: UUID,
    body: DecisionRequest,
    review_default_months: int,
    review_maximum_months: int,
) -> CommandResult:
    """The package of support, the lead professional and the review date."""
    if queries.panel_row(ctx.conn, ctx.scope, panel_id) is None:
        raise queries.no_panel(panel_id)
    row = queries.case_row(ctx.conn, ctx.scope, body.case_id)
    if row is None:
        raise domain.InvalidCommand("case_id", f"no case {body.case_id} in the allocation queue")
    listed = queries.on_agenda(ctx.conn, panel_id, body.case_id)
    reg, current = registry.load(ctx.conn), _current(ctx, row)
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
        decided_by=ctx.scope.subject,
        decided_at=ctx.now,
    )
    events = domain.record_decision(
        current,
        listed,
        command,
        reg,
        queries.places_taken(ctx.conn),
        review_default_months,
        review_maximum_months,
    )
    ctx.append(domain.stream_id(body.case_id), current.version, events)
    _check_places_after(ctx.conn, reg, events[-1])
    decision = events[-1]
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


def _check_places_after(conn: Connection, reg: Registry, decision: PanelDecisionRecorded) -> None:
    """Count places again after the append, as `_check_capacity_after` counts cases."""
    taken = queries.places_taken(conn)
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
