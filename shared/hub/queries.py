"""The one way a query runs: off the event loop, with the caller's scope, audited.

A service's `queries.py` holds its read side as functions of a `QueryContext`
(the connection, the caller's `Scope`, the clock) that filter by the scope in
SQL and note the records they return; `run_query` writes those ids to the audit
log, or that the caller was refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from fastapi import Request
from sqlalchemy import Connection

from hub.audit import LISTED, READ, audit_rows, write_audit
from hub.commands import audit_refusal
from hub.refusals import Refusal
from hub.scope import Scope
from hub.service import Runtime

T = TypeVar("T")


@dataclass
class QueryContext:
    """One query's connection, caller and moment; it notes the records it returns."""

    conn: Connection
    scope: Scope
    now: datetime
    seen: list[tuple[str, str]] = field(default_factory=list)

    listed: list[tuple[str, str]] = field(default_factory=list)

    def saw(self, resource_type: str, *resource_ids: object) -> None:
        """A record (or a list's filter) the caller is about to be shown, for the audit log."""
        self.seen.extend((resource_type, str(resource_id)) for resource_id in resource_ids)

    def listed_ids(self, resource_type: str, *resource_ids: object) -> None:
        """The records a list is about to show, each audited as `listed`."""
        self.listed.extend((resource_type, str(resource_id)) for resource_id in resource_ids)


async def run_query(
    runtime: Runtime,
    request: Request,
    scope: Scope,
    query: Callable[[QueryContext], T],
    *,
    now: datetime,
) -> T:
    """Run `query` off the event loop; audit what it showed, or that it refused."""
    context_of: list[QueryContext] = []

    def read(conn: Connection) -> T:
        context = QueryContext(conn, scope, now)
        context_of.append(context)
        return query(context)

    try:
        result = await runtime.read(read)
    except Refusal as refusal:
        await audit_refusal(runtime, scope, request, refusal)
        raise
    context = context_of[0]
    rows = audit_rows(scope, READ, context.seen) + audit_rows(scope, LISTED, context.listed)
    if rows:
        await runtime.write(lambda uow: write_audit(uow.conn, rows))
    return result
