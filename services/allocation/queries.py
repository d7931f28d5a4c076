"""Allocation's read side: the SQL and the views, each limited to the caller's scope.

Every function takes a `QueryContext` (or, for the commands' reads, a
connection and a `Scope`) and filters by the scope in SQL: a case, worker or
panel outside it is not found, exactly as a missing one.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, false, func, or_, select, true

from allocation import domain, registry
from allocation.projections import (
    URGENCY_RANK,
    allocation_cases,
    commissioned_places,
    incoming_referrals,
    panel_agenda,
    panel_decisions,
)
from allocation.registry import Registry, Worker
from allocation.schemas import (
    AgendaItem,
    Allocation,
    AllocationQueue,
    AuthorityRegistry,
    CaseAllocationView,
    CaseloadEntry,
    Caseloads,
    DecisionRecorded,
    LeadProfessionalSummary,
    LocalityTimeliness,
    Panel,
    PanelList,
    ProviderCapacity,
    QueueStatus,
    RegistryView,
    ServiceCapacity,
    Timeliness,
)
from allocation.tables import panels
from hub import subject_access
from hub.http.pagination import InvalidCursor, after_position, decode_cursor, encode_cursor
from hub.queries import QueryContext
from hub.refusals import NotFound
from hub.scope import Scope

# --- scope, in SQL and against the registry -------------------------------------------


def cases_in(scope: Scope, table: Any = allocation_cases) -> ColumnElement[bool]:
    """The cases a caller may see and work: their localities' and their teams'."""
    if not scope.is_staff:
        return false()
    if scope.authority_wide:
        return true()
    return or_(table.c.locality.in_(scope.localities), table.c.team_id.in_(scope.teams))


def localities_in(scope: Scope, column: Any) -> ColumnElement[bool]:
    """Rows of the caller's localities (panels, agendas): teams alone give no locality."""
    if not scope.is_staff:
        return false()
    if scope.authority_wide:
        return true()
    return column.in_(scope.localities)


def team_in(scope: Scope, reg: Registry, team_id: str | None) -> bool:
    """A team the caller may act for: one of theirs, or one in their localities."""
    if scope.authority_wide:
        return True
    team = reg.teams.get(team_id) if team_id is not None else None
    return scope.is_staff and (
        team_id in scope.teams or (team is not None and team.locality in scope.localities)
    )


def worker_in(scope: Scope, reg: Registry, worker_id: UUID | str) -> Worker | None:
    """The worker, when in one of the caller's teams; None when missing or outside them."""
    worker = reg.worker(worker_id)
    return worker if worker is not None and team_in(scope, reg, worker.team) else None


def no_case(case_id: UUID) -> NotFound:
    return NotFound(f"No case {case_id} in the allocation queue.", resource=("case", str(case_id)))


def no_worker(worker_id: UUID) -> NotFound:
    return NotFound(f"No worker {worker_id} in the registry.", resource=("worker", str(worker_id)))


def no_panel(panel_id: UUID) -> NotFound:
    return NotFound(f"No panel {panel_id}.", resource=("panel", str(panel_id)))


# --- rows the commands decide on ------------------------------------------------------


def case_row(conn: Connection, scope: Scope, case_id: UUID) -> Any:
    """The case's queue row if the caller may see it, else None (missing or out of scope)."""
    return conn.execute(
        select(allocation_cases).where(allocation_cases.c.case_id == str(case_id), cases_in(scope))
    ).first()


def panel_row(conn: Connection, scope: Scope, panel_id: UUID) -> Any:
    return conn.execute(
        select(panels).where(
            panels.c.panel_id == str(panel_id), localities_in(scope, panels.c.locality)
        )
    ).first()


def facts_of(row: Any) -> domain.CaseFacts:
    return domain.CaseFacts(
        case_id=UUID(row.case_id),
        family_id=UUID(row.family_id),
        locality=row.locality,
        children_dates_of_birth=tuple(
            datetime.fromisoformat(d).date() for d in row.children_dates_of_birth.split(",") if d
        ),
        factors=tuple(f for f in row.concern_factors.split(",") if f),
    )


def caseloads_by_worker(conn: Connection) -> dict[str, int]:
    """Open cases per worker, authority-wide: capacity is counted whoever asks."""
    rows = conn.execute(
        select(allocation_cases.c.worker_id, func.count())
        .where(allocation_cases.c.status == "allocated")
        .group_by(allocation_cases.c.worker_id)
    ).all()
    return {worker_id: count for worker_id, count in rows}


def places_taken(conn: Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        select(commissioned_places.c.provider_id, commissioned_places.c.service, func.count())
        .where(commissioned_places.c.released_at.is_(None))
        .group_by(commissioned_places.c.provider_id, commissioned_places.c.service)
    ).all()
    return {(provider, service): count for provider, service, count in rows}


def allocated_cases_of(conn: Connection, worker_id: UUID) -> list[Any]:
    return conn.execute(
        select(allocation_cases)
        .where(
            allocation_cases.c.worker_id == str(worker_id),
            allocation_cases.c.status == "allocated",
        )
        .order_by(allocation_cases.c.urgency_rank, allocation_cases.c.queued_at)
    ).all()


def waiting_for_panel(conn: Connection, locality: str) -> list[Any]:
    return conn.execute(
        select(panel_agenda).where(
            panel_agenda.c.locality == locality,
            panel_agenda.c.panel_id.is_(None),
            panel_agenda.c.status == "awaiting",
        )
    ).all()


def on_agenda(conn: Connection, panel_id: UUID, case_id: UUID) -> bool:
    return (
        conn.execute(
            select(panel_agenda.c.case_id).where(
                panel_agenda.c.case_id == str(case_id),
                panel_agenda.c.panel_id == str(panel_id),
                panel_agenda.c.status == "awaiting",
            )
        ).first()
        is not None
    )


# --- the queue ------------------------------------------------------------------------


def allocation_queue(
    ctx: QueryContext,
    status: QueueStatus,
    locality: str | None,
    limit: int,
    cursor: str | None,
) -> AllocationQueue:
    """Most urgent first (immediate, urgent, routine), then longest waiting, a page at a time."""
    table = allocation_cases
    query = select(table).where(table.c.status == status.value, cases_in(ctx.scope))
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
    rows = ctx.conn.execute(query.limit(limit + 1)).all()
    page = rows[:limit]
    ctx.saw("allocation_list", status.value)
    ctx.listed_ids("case", *(row.case_id for row in page))
    return AllocationQueue(
        status=status,
        items=[allocation_of(row, ctx.now) for row in page],
        next_cursor=_encode_cursor(status, page[-1]) if len(rows) > limit else None,
    )


def allocation_of(row: Any, now: datetime) -> Allocation:
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
    invalid = domain.InvalidCommand("query.cursor", "not a cursor this list gave out", "cursor")
    try:
        listed, rank, queued, after = decode_cursor(cursor)
    except InvalidCursor as exc:
        raise invalid from exc
    if listed != status.value or rank not in URGENCY_RANK.values():
        raise invalid
    return rank, queued, after


# --- one case -------------------------------------------------------------------------


def case_allocation(ctx: QueryContext, case_id: UUID) -> CaseAllocationView:
    row = case_row(ctx.conn, ctx.scope, case_id)
    if row is None:
        raise no_case(case_id)
    decisions = ctx.conn.execute(
        select(panel_decisions)
        .where(panel_decisions.c.case_id == str(case_id))
        .order_by(panel_decisions.c.decided_at)
    ).all()
    ctx.saw("case", case_id)
    return CaseAllocationView(
        allocation=allocation_of(row, ctx.now),
        panel_decisions=[decision_of(d) for d in decisions],
    )


def decision_of(row: Any) -> DecisionRecorded:
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


# --- caseloads and performance --------------------------------------------------------


def worker_caseload(ctx: QueryContext, worker_id: UUID) -> list[Allocation]:
    """The open cases of a worker in one of the caller's teams."""
    if worker_in(ctx.scope, registry.load(ctx.conn), worker_id) is None:
        raise no_worker(worker_id)
    rows = ctx.conn.execute(
        select(allocation_cases)
        .where(
            allocation_cases.c.worker_id == str(worker_id),
            allocation_cases.c.status == "allocated",
        )
        .order_by(allocation_cases.c.allocated_at)
    ).all()
    ctx.saw("caseload", worker_id)
    ctx.listed_ids("case", *(row.case_id for row in rows))
    return [allocation_of(row, ctx.now) for row in rows]


def caseloads(ctx: QueryContext, team_id: str | None) -> Caseloads:
    """Cases held by each worker of the caller's teams, against their limits."""
    reg, loads = registry.load(ctx.conn), caseloads_by_worker(ctx.conn)
    workers = [
        w
        for w in reg.workers.values()
        if (team_id is None or w.team == team_id) and team_in(ctx.scope, reg, w.team)
    ]
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
    ctx.saw("caseloads", team_id or "all")
    return Caseloads(workers=entries, teams=teams)


def timeliness(ctx: QueryContext) -> Timeliness:
    """Time from triage or step-down to first allocation, per locality of the caller's."""
    rows = ctx.conn.execute(
        select(
            allocation_cases.c.locality,
            allocation_cases.c.queued_at,
            allocation_cases.c.first_allocated_at,
        ).where(cases_in(ctx.scope))
    ).all()
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


# --- the registry and providers: the authority's reference data, for all staff ----------


def registry_view(ctx: QueryContext) -> RegistryView:
    reg = registry.load(ctx.conn)
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


def provider_capacity(ctx: QueryContext) -> ProviderCapacity:
    reg, taken = registry.load(ctx.conn), places_taken(ctx.conn)
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


# --- panels ---------------------------------------------------------------------------


def panel_list(ctx: QueryContext, locality: str | None) -> PanelList:
    """The caller's localities' panels, soonest first, each as `panel()` shows it."""
    query = select(panels).where(localities_in(ctx.scope, panels.c.locality))
    if locality is not None:
        query = query.where(panels.c.locality == locality)
    rows = ctx.conn.execute(query.order_by(panels.c.meets_on, panels.c.panel_id)).all()
    agendas = _agendas(ctx.conn, [row.panel_id for row in rows])
    ctx.saw("panel_list", locality or "all")
    ctx.listed_ids("panel_agenda", *(row.panel_id for row in rows))
    return PanelList(panels=[panel_of(row, agendas.get(row.panel_id, [])) for row in rows])


def panel(ctx: QueryContext, panel_id: UUID) -> Panel:
    row = panel_row(ctx.conn, ctx.scope, panel_id)
    if row is None:
        raise no_panel(panel_id)
    ctx.saw("panel_agenda", panel_id)
    return panel_of(row, _agendas(ctx.conn, [row.panel_id]).get(row.panel_id, []))


def panel_in_transaction(conn: Connection, scope: Scope, panel_id: str) -> Panel:
    """A panel just scheduled, as `panel()` shows it."""
    row = panel_row(conn, scope, UUID(panel_id))
    return panel_of(row, _agendas(conn, [panel_id]).get(panel_id, []))


def _agendas(conn: Connection, panel_ids: list[str]) -> dict[str, list[Any]]:
    """Every listed panel's agenda in one query: the list and the detail say the same."""
    agendas: dict[str, list[Any]] = {}
    if not panel_ids:
        return agendas
    rows = conn.execute(
        select(panel_agenda)
        .where(panel_agenda.c.panel_id.in_(panel_ids))
        .order_by(panel_agenda.c.completed_at, panel_agenda.c.case_id)
    ).all()
    for item in rows:
        agendas.setdefault(item.panel_id, []).append(item)
    return agendas


def panel_of(row: Any, agenda: list[Any]) -> Panel:
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


# --- subject access -----------------------------------------------------------------


def family_records(ctx: QueryContext, family_id: UUID) -> subject_access.FamilyRecords:
    """Everything allocation holds about the family: its cases in the queue and with
    their teams, the referrals seen arriving, its panels' agendas and decisions."""
    subject_access.check_allowed(ctx.scope)
    family = str(family_id)
    of_family = select(allocation_cases.c.case_id).where(allocation_cases.c.family_id == family)

    def section(name: str, title: str, query: Any, description: str = "") -> Any:
        # The queue's sort key says nothing about the family.
        return subject_access.section(
            ctx.conn, name, title, query, description, leave_out=("urgency_rank",)
        )

    sections = [
        section(
            "cases",
            "Cases: queue, team and lead professional",
            select(allocation_cases)
            .where(allocation_cases.c.family_id == family)
            .order_by(allocation_cases.c.queued_at),
        ),
        section(
            "incoming_referrals",
            "Referrals seen arriving at the front door",
            select(incoming_referrals)
            .where(incoming_referrals.c.family_id == family)
            .order_by(incoming_referrals.c.received_at),
        ),
        section(
            "panel_agenda",
            "Multi-agency panel agendas",
            select(panel_agenda)
            .where(panel_agenda.c.family_id == family)
            .order_by(panel_agenda.c.completed_at),
        ),
        section(
            "panel_decisions",
            "Multi-agency panel decisions",
            select(panel_decisions)
            .where(panel_decisions.c.family_id == family)
            .order_by(panel_decisions.c.decided_at),
        ),
        section(
            "commissioned_places",
            "Places commissioned for the family",
            select(commissioned_places)
            .where(commissioned_places.c.case_id.in_(of_family))
            .order_by(commissioned_places.c.taken_at),
        ),
    ]
    streams = [domain.stream_id(UUID(row["case_id"])) for row in sections[0].rows]
    ctx.saw(subject_access.RESOURCE_TYPE, family_id)
    return subject_access.records(ctx.conn, "allocation", family_id, sections, stream_ids=streams)
