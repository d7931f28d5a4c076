"""The access log of children's records: who read what, when, under which trace."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from hub.auth import Principal
from hub.observability import current_trace_id
from hub.service import Runtime
from hub.tables import audit_log

_INSERT = insert(audit_log)


async def record_read(
    runtime: Runtime, principal: Principal, resource_type: str, resource_id: str
) -> None:
    """Write down that `principal` read a record, before the record is returned."""
    row = {
        "at": datetime.now(UTC),
        "actor": principal.subject,
        "actor_kind": principal.kind,
        "action": "read",
        "resource_type": resource_type,
        "resource_id": resource_id,
        "trace_id": current_trace_id(),
    }
    await runtime.write(lambda uow: uow.conn.execute(_INSERT, row))
