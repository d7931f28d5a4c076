"""The access log of children's records: who read or was refused what, when, under which trace."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert

from hub.auth import Principal
from hub.clock import utc_now
from hub.observability import current_trace_id
from hub.scope import Scope
from hub.tables import audit_log

if TYPE_CHECKING:  # hub.service offers the dead-letter API, whose refusals are audited here
    from hub.service import Runtime

_INSERT = insert(audit_log)

READ = "read"
# A record shown in a list: the list's filter is a `read`, each record in it `listed`.
LISTED = "listed"
REFUSED = "refused"


def audit_rows(
    actor: Principal | Scope,
    action: str,
    resources: Iterable[tuple[str, str]],
    at: datetime | None = None,
) -> list[dict]:
    """One audit row for each (resource type, resource id) `actor` touched."""
    at = at or utc_now()
    trace_id = current_trace_id()
    return [
        {
            "at": at,
            "actor": actor.subject,
            "actor_kind": actor.kind,
            "action": action,
            "resource_type": resource_type[:50],
            "resource_id": str(resource_id)[:200],
            "trace_id": trace_id,
        }
        for resource_type, resource_id in resources
    ]


def write_audit(conn: Connection, rows: list[dict]) -> None:
    if rows:
        conn.execute(_INSERT, rows)


async def record_access(
    runtime: Runtime, actor: Principal | Scope, action: str, resources: Iterable[tuple[str, str]]
) -> None:
    """Write down, in a transaction of its own, what `actor` read or was refused."""
    rows = audit_rows(actor, action, resources)
    if rows:
        await runtime.write(lambda uow: write_audit(uow.conn, rows))


async def record_read(
    runtime: Runtime, principal: Principal | Scope, resource_type: str, resource_id: str
) -> None:
    """Write down that `principal` read a record, before the record is returned."""
    await record_access(runtime, principal, READ, [(resource_type, resource_id)])
