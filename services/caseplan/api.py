"""Case plan's HTTP API."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from sqlalchemy import and_, or_, select

from caseplan.projections import chronology_entries
from caseplan.schemas import Chronology, ChronologyEntry
from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.http.problems import FieldError, Problem, problem_responses
from hub.service import Runtime, runtime_of

router = APIRouter(prefix="/v1", tags=["families"])


@router.get(
    "/families/{family_id}/chronology",
    response_model=Chronology,
    responses=problem_responses(401, 403, 404, 422),
    summary="Everything that happened with a family, in order",
)
async def family_chronology(
    family_id: UUID,
    runtime: Annotated[Runtime, Depends(runtime_of)],
    caller: Annotated[Principal, Depends(require_scopes("chronology:read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Chronology:
    """Every event about the family from every service, oldest first, a page at a time."""
    table = chronology_entries
    query = select(table).where(table.c.family_id == str(family_id))
    if cursor is not None:
        after_time, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                table.c.occurred_at > after_time,
                and_(table.c.occurred_at == after_time, table.c.event_id > after_id),
            )
        )
    query = query.order_by(table.c.occurred_at, table.c.event_id).limit(limit + 1)
    rows = await runtime.read(lambda conn: conn.execute(query).all())
    if not rows and cursor is None:
        raise Problem.not_found(f"No chronology for family {family_id}.")
    await record_read(runtime, caller, "family_chronology", str(family_id))
    page = rows[:limit]
    next_cursor = (
        _encode_cursor(page[-1].occurred_at, page[-1].event_id) if len(rows) > limit else None
    )
    return Chronology(
        family_id=family_id,
        entries=[ChronologyEntry.model_validate(row, from_attributes=True) for row in page],
        next_cursor=next_cursor,
    )


def _encode_cursor(occurred_at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{event_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        occurred_at, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(occurred_at), str(UUID(event_id))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Problem.unprocessable(
            "The cursor is not one this API gave out.",
            errors=[FieldError(field="query.cursor", message="not a valid cursor", code="cursor")],
        ) from exc
