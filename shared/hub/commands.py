"""The one way a command runs: load, decide with the pure domain, append, in one transaction.

A service's `commands.py` holds its write side as functions of a
`CommandContext` (the transaction, the caller's `Scope`, the clock, the
`If-Match` the caller sent) that return a `CommandResult`; they know nothing
of HTTP. `run_command` runs one for a request: it answers a repeated
`Idempotency-Key` with the first response, stores the response with the
events, turns the store's conflicts into refusals, and writes every refused
access (403, 404) to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection

from hub.audit import REFUSED, audit_rows, record_access, write_audit
from hub.contracts.base import EventData
from hub.idempotency import (
    REPLAYED_HEADER,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    StoredResponse,
    fingerprint,
    previous_response,
    remember_response,
)
from hub.refusals import Conflict, Invalid, Refusal, StaleVersion
from hub.scope import Scope
from hub.service import Runtime, UnitOfWork
from hub.store import ConcurrencyConflict, PendingEvent, RecordedEvent

JSON = "application/json"


class CommandResult:
    """What a command answers: status, body and headers (e.g. Location)."""

    def __init__(
        self, status_code: int, body: BaseModel | None, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})


def etag(version: int) -> str:
    """A stream version as the `ETag` a read gives and `If-Match` sends back."""
    return f'"{version}"'


def _stale(version: int) -> Refusal:
    return StaleVersion(
        f"The record changed after you read it (it is now version {version}); read it again."
    )


@dataclass
class CommandContext:
    """One command's transaction, caller and moment."""

    uow: UnitOfWork
    scope: Scope
    now: datetime
    if_match: str | None = None
    stale: Callable[[int], Refusal] = _stale
    _audit: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def conn(self) -> Connection:
        return self.uow.conn

    def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        return self.uow.read_stream(stream_id)

    def expect(self, version: int) -> None:
        """Refuse when the caller's `If-Match` names another version than `version`."""
        if self.if_match is not None and self.if_match.strip() != etag(version):
            raise self.stale(version)

    def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[EventData | PendingEvent],
        *,
        occurred_at: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Append after the version decided on, as the caller; `If-Match` is honoured here."""
        self.expect(expected_version)
        pending = [
            e
            if isinstance(e, PendingEvent)
            else PendingEvent(e, occurred_at=occurred_at or self.now)
            for e in events
        ]
        return self.uow.append(stream_id, expected_version, pending, actor=self.scope.subject)

    def audit(self, action: str, resource_type: str, resource_id: str) -> None:
        """A change outside the event store (the registry, a panel's calendar), for the log."""
        write_audit(self.conn, audit_rows(self.scope, action, [(resource_type, resource_id)]))


async def run_command(
    runtime: Runtime,
    request: Request,
    scope: Scope,
    command: Callable[[CommandContext], CommandResult],
    *,
    now: datetime,
    payload: BaseModel | None = None,
    idempotency_key: str | None = None,
    if_match: str | None = None,
    stale: Callable[[int], Refusal] = _stale,
) -> Response:
    """Run `command` in one transaction; a repeated key returns the first response unchanged.

    The transaction is group-committed with concurrent ones (see `Runtime.write`).
    """
    # Only a keyed request is remembered, so only its body is worth serialising again.
    request_fingerprint = (
        None
        if idempotency_key is None
        else fingerprint(
            request.method,
            request.url.path,
            "" if payload is None else payload.model_dump_json(),
        )
    )

    def transact(uow: UnitOfWork) -> Response:
        if idempotency_key is not None and request_fingerprint:
            earlier = previous_response(
                uow.conn, scope.subject, idempotency_key, request_fingerprint
            )
            if earlier is not None:
                return Response(
                    earlier.body,
                    earlier.status_code,
                    headers={**earlier.headers, REPLAYED_HEADER: "true"},
                    media_type=JSON,
                )
        result = command(CommandContext(uow, scope, now, if_match, stale))
        if result.body is None:  # 204: nothing to answer, nothing worth remembering
            return Response(status_code=result.status_code, headers=result.headers)
        body = result.body.model_dump_json()
        if idempotency_key is not None and request_fingerprint:
            remember_response(
                uow.conn,
                scope.subject,
                idempotency_key,
                request_fingerprint,
                StoredResponse(result.status_code, body, result.headers),
            )
        return Response(body, result.status_code, headers=result.headers, media_type=JSON)

    try:
        return await runtime.write(transact)
    except Refusal as refusal:
        await audit_refusal(runtime, scope, request, refusal)
        raise
    except ConcurrencyConflict as exc:
        raise Conflict(
            "Someone else changed this record at the same moment; read it again and retry.",
            problem="concurrency-conflict",
            title="Changed meanwhile",
        ) from exc
    except IdempotencyKeyReused as exc:
        raise Invalid(
            f"Idempotency-Key {exc} was first used for a different request.",
            problem="idempotency-key-reused",
            title="Idempotency-Key reused",
        ) from exc
    except IdempotencyKeyInFlight as exc:
        raise Conflict(
            "Another request with this Idempotency-Key was handled at the same moment; "
            "retry to receive its response.",
            problem="idempotency-key-in-use",
            title="Idempotency-Key in use",
        ) from exc


async def audit_refusal(runtime: Runtime, scope: Scope, request: Request, refusal: Refusal) -> None:
    """A refused access (403, or 404: missing or out of scope alike) goes to the audit log."""
    if refusal.status in (403, 404):
        resource = refusal.resource or ("request", f"{request.method} {request.url.path}")
        await record_access(runtime, scope, REFUSED, [resource])
