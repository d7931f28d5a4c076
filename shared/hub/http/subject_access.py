"""Each service's subject access route: what it holds about one family, for information
governance only (`subject-access:read`). The work is the service's own
`queries.family_records`; intake gathers the four answers (docs/operations.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from hub.http.dependencies import Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import QueryContext, run_query
from hub.scope import Scope
from hub.service import Runtime, runtime_of
from hub.subject_access import PERMISSION, FamilyRecords

InformationGovernance = Annotated[
    Scope,
    Depends(
        caller(
            PERMISSION,
            kind="staff",
            why="Subject access requests are answered by the authority's information governance.",
        )
    ),
]


def family_router(family_records: Callable[[QueryContext, UUID], FamilyRecords]) -> APIRouter:
    """The route of one service, answering with its `family_records` query."""
    router = APIRouter(prefix="/v1", tags=["subject access"])

    @router.get(
        "/subject-access/families/{family_id}",
        response_model=FamilyRecords,
        responses=problem_responses(401, 403, 422),
        summary="Everything this service holds about a family (subject access)",
    )
    async def family_subject_access(
        family_id: UUID,
        request: Request,
        runtime: Annotated[Runtime, Depends(runtime_of)],
        scope: InformationGovernance,
        now: Now,
    ) -> FamilyRecords:
        """The service's records of the family in named sections, every event of its own
        store about the family, and its audit log's rows about them. A family it knows
        nothing about is an empty answer, not a 404: "nothing held" is an answer too.
        For information governance only; the request is itself audited.
        """
        return await run_query(
            runtime, request, scope, lambda ctx: family_records(ctx, family_id), now=now
        )

    return router
