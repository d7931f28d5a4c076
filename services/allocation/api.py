"""Allocation's HTTP API: routes only; the work is in `commands` and `queries`."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from allocation import commands, queries
from allocation.registry import Locality, Provider, Team, Worker
from allocation.schemas import (
    Allocation,
    AllocationQueue,
    AllocationRecorded,
    AllocationRequest,
    CaseAllocationView,
    CaseloadReallocated,
    CaseloadReallocationRequest,
    Caseloads,
    DecisionRecorded,
    DecisionRequest,
    Panel,
    PanelList,
    PanelRequest,
    ProviderCapacity,
    QueueStatus,
    ReallocationRequest,
    RegistryChange,
    RegistryView,
    Timeliness,
)
from allocation.settings import AllocationSettings, current_settings
from hub.commands import run_command
from hub.contracts.identifiers import Slug
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.scope import Scope
from hub.service import Runtime, runtime_of

router = APIRouter(prefix="/v1", tags=["allocation"])

OptionalSlug = Slug | None
STAFF_ONLY = "Only the authority's staff use the allocation service."


def staff(*permissions: str):
    return Depends(caller(*permissions, kind="staff", why=STAFF_ONLY))


async def seeded_runtime(
    request: Request,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    settings: Annotated[AllocationSettings, Depends(current_settings)],
    now: Now,
) -> Runtime:
    """The runtime, once the registry file is in a database that had no registry."""
    if not getattr(request.app.state, "registry_seeded", False):
        await runtime.write(lambda uow: commands.seed_registry(uow, settings.registry_file, now))
        request.app.state.registry_seeded = True
    return runtime


Settings = Annotated[AllocationSettings, Depends(current_settings)]
Hub = Annotated[Runtime, Depends(seeded_runtime)]
CaseId = Annotated[UUID, Path(description="The early help case (from triage or a step-down).")]
Reader = Annotated[Scope, staff("allocations:read")]
Allocator = Annotated[Scope, staff("allocations:write")]
RegistryEditor = Annotated[Scope, staff("registry:write")]
PanelReader = Annotated[Scope, staff("panels:read")]
PanelWriter = Annotated[Scope, staff("panels:write")]
AuthorityOfNew = Annotated[
    OptionalSlug,
    Query(description="The authority of a new entry (an existing one keeps its own)."),
]


# --- the queue ----------------------------------------------------------------------


@router.get(
    "/allocations",
    response_model=AllocationQueue,
    responses=problem_responses(401, 403, 422),
    summary="The allocation queue, and cases by status",
)
async def list_allocations(
    request: Request,
    runtime: Hub,
    scope: Reader,
    now: Now,
    status: QueueStatus = QueueStatus.UNALLOCATED,
    locality: Annotated[OptionalSlug, Query(description="Only this locality's cases.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> AllocationQueue:
    """Most urgent first (immediate, urgent, routine), then longest waiting, a page at a time.
    Staff limited to localities or teams see only their cases."""
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.allocation_queue(ctx, status, locality, limit, cursor),
        now=now,
    )


# --- allocating ---------------------------------------------------------------------


@router.get(
    "/cases/{case_id}/allocation",
    response_model=CaseAllocationView,
    responses=problem_responses(401, 403, 404),
    summary="Who holds a case, and what its panels decided",
)
async def get_allocation(
    case_id: CaseId, request: Request, runtime: Hub, scope: Reader, now: Now
) -> CaseAllocationView:
    """A case outside the caller's localities and teams is a 404, as a missing one."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.case_allocation(ctx, case_id), now=now
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
    scope: Allocator,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The worker becomes the family's lead professional. A worker at their caseload
    limit is refused (409) unless a manager gives `override_reason`. A case allocated
    already is a 409: reallocate it instead.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.allocate(ctx, case_id, body),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
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
    scope: Allocator,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The same rules as allocating; the case keeps its worker until the new one is recorded."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.reallocate(ctx, case_id, body),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
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
    scope: Allocator,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every open case of the worker moves, each with its own `CaseAllocated`, to one named
    worker or (`auto`) each to the best-matched worker with spare capacity. All or nothing:
    if one case cannot be placed, none moves (409) and no case is left without a worker.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.reallocate_caseload(ctx, worker_id, body),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
    )


# --- caseloads and performance ------------------------------------------------------


@router.get(
    "/workers/{worker_id}/caseload",
    response_model=list[Allocation],
    responses=problem_responses(401, 403, 404),
    summary="The open cases a worker holds",
)
async def worker_caseload(
    worker_id: UUID, request: Request, runtime: Hub, scope: Reader, now: Now
) -> list[Allocation]:
    return await run_query(
        runtime, request, scope, lambda ctx: queries.worker_caseload(ctx, worker_id), now=now
    )


@router.get(
    "/caseloads",
    response_model=Caseloads,
    responses=problem_responses(401, 403, 422),
    summary="Cases held by each worker and team, against their limits",
)
async def caseloads(
    request: Request,
    runtime: Hub,
    scope: Reader,
    now: Now,
    team_id: Annotated[OptionalSlug, Query(description="Only this team's workers.")] = None,
) -> Caseloads:
    return await run_query(
        runtime, request, scope, lambda ctx: queries.caseloads(ctx, team_id), now=now
    )


@router.get(
    "/allocations/timeliness",
    response_model=Timeliness,
    responses=problem_responses(401, 403),
    summary="Time from triage or step-down to first allocation, per locality",
)
async def timeliness(request: Request, runtime: Hub, scope: Reader, now: Now) -> Timeliness:
    return await run_query(runtime, request, scope, queries.timeliness, now=now)


# --- the registry -------------------------------------------------------------------


@router.get(
    "/registry",
    response_model=RegistryView,
    responses=problem_responses(401, 403),
    summary="Localities, teams, workers and providers of every authority",
    tags=["registry"],
)
async def get_registry(request: Request, runtime: Hub, scope: Reader, now: Now) -> RegistryView:
    return await run_query(runtime, request, scope, queries.registry_view, now=now)


@router.put(
    "/registry/localities/{entry_id}",
    response_model=RegistryChange,
    responses=problem_responses(401, 403, 404, 413, 422),
    summary="Add or replace a locality",
    tags=["registry"],
)
async def put_locality(
    entry_id: str,
    entry: Annotated[Locality, Body()],
    request: Request,
    runtime: Hub,
    scope: RegistryEditor,
    now: Now,
    authority_id: AuthorityOfNew = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.put_registry_entry(ctx, "locality", entry_id, entry, authority_id),
        now=now,
    )


@router.put(
    "/registry/teams/{entry_id}",
    response_model=RegistryChange,
    responses=problem_responses(401, 403, 404, 413, 422),
    summary="Add or replace a team",
    tags=["registry"],
)
async def put_team(
    entry_id: str,
    entry: Annotated[Team, Body()],
    request: Request,
    runtime: Hub,
    scope: RegistryEditor,
    now: Now,
    authority_id: AuthorityOfNew = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.put_registry_entry(ctx, "team", entry_id, entry, authority_id),
        now=now,
    )


@router.put(
    "/registry/workers/{entry_id}",
    response_model=RegistryChange,
    responses=problem_responses(401, 403, 404, 413, 422),
    summary="Add or replace a worker",
    tags=["registry"],
)
async def put_worker(
    entry_id: str,
    entry: Annotated[Worker, Body()],
    request: Request,
    runtime: Hub,
    scope: RegistryEditor,
    now: Now,
    authority_id: AuthorityOfNew = None,
) -> Response:
    """A manager limited to localities or teams changes their own teams' workers only."""
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.put_registry_entry(ctx, "worker", entry_id, entry, authority_id),
        now=now,
    )


@router.put(
    "/registry/providers/{entry_id}",
    response_model=RegistryChange,
    responses=problem_responses(401, 403, 404, 413, 422),
    summary="Add or replace a provider",
    tags=["registry"],
)
async def put_provider(
    entry_id: str,
    entry: Annotated[Provider, Body()],
    request: Request,
    runtime: Hub,
    scope: RegistryEditor,
    now: Now,
    authority_id: AuthorityOfNew = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.put_registry_entry(ctx, "provider", entry_id, entry, authority_id),
        now=now,
    )


# --- providers ----------------------------------------------------------------------


@router.get(
    "/providers/capacity",
    response_model=ProviderCapacity,
    responses=problem_responses(401, 403),
    summary="Places each provider's services have, and how many panels have taken",
    tags=["registry"],
)
async def provider_capacity(
    request: Request, runtime: Hub, scope: Reader, now: Now
) -> ProviderCapacity:
    return await run_query(runtime, request, scope, queries.provider_capacity, now=now)


# --- panels -------------------------------------------------------------------------


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
    scope: PanelWriter,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Cases of the locality waiting for a panel (their assessment done on or before the
    meeting day) join its agenda. A chair limited to localities schedules theirs only.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.schedule_panel(ctx, body),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/panels",
    response_model=PanelList,
    responses=problem_responses(401, 403),
    summary="Panel meetings, soonest first",
    tags=["panels"],
)
async def list_panels(
    request: Request,
    runtime: Hub,
    scope: PanelReader,
    now: Now,
    locality: Annotated[OptionalSlug, Query()] = None,
) -> PanelList:
    """Each panel with its agenda, as `GET /v1/panels/{panel_id}` shows it."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.panel_list(ctx, locality), now=now
    )


@router.get(
    "/panels/{panel_id}",
    response_model=Panel,
    responses=problem_responses(401, 403, 404),
    summary="A panel meeting with its agenda",
    tags=["panels"],
)
async def get_panel(
    panel_id: UUID, request: Request, runtime: Hub, scope: PanelReader, now: Now
) -> Panel:
    return await run_query(
        runtime, request, scope, lambda ctx: queries.panel(ctx, panel_id), now=now
    )


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
    scope: PanelWriter,
    settings: Settings,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The package of support, the lead professional (confirmed, or changed: then the case
    moves to them) and the review date. Each commissioned service takes a place from its
    provider; with none left the decision is refused (409). A case not awaiting this
    panel's decision is a 409.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.record_decision(
            ctx,
            panel_id,
            body,
            settings.review_default_months,
            settings.review_maximum_months,
        ),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
    )
