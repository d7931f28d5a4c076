"""Running a command from an HTTP request: one transaction, `Idempotency-Key` honoured."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import Request, Response
from pydantic import BaseModel

from hub.http.problems import Problem, problem_type
from hub.idempotency import (
    REPLAYED_HEADER,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    StoredResponse,
    fingerprint,
    previous_response,
    remember_response,
)
from hub.service import Runtime, UnitOfWork
from hub.store import ConcurrencyConflict

JSON = "application/json"


class CommandResult:
    """What a command answers: status, body and headers (e.g. Location)."""

    def __init__(
        self, status_code: int, body: BaseModel, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})


async def run_command(
    runtime: Runtime,
    request: Request,
    *,
    principal: str,
    idempotency_key: str | None,
    payload: BaseModel | None,
    command: Callable[[UnitOfWork], CommandResult],
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
            earlier = previous_response(uow.conn, principal, idempotency_key, request_fingerprint)
            if earlier is not None:
                return Response(
                    earlier.body,
                    earlier.status_code,
                    headers={**earlier.headers, REPLAYED_HEADER: "true"},
                    media_type=JSON,
                )
        result = command(uow)
        body = result.body.model_dump_json()
        if idempotency_key is not None and request_fingerprint:
            remember_response(
                uow.conn,
                principal,
                idempotency_key,
                request_fingerprint,
                StoredResponse(result.status_code, body, result.headers),
            )
        return Response(body, result.status_code, headers=result.headers, media_type=JSON)

    try:
        return await runtime.write(transact)
    except ConcurrencyConflict as exc:
        raise Problem(
            409,
            "Changed meanwhile",
            "Someone else changed this record at the same moment; read it again and retry.",
            type=problem_type("concurrency-conflict"),
        ) from exc
    except IdempotencyKeyReused as exc:
        raise Problem(
            422,
            "Idempotency-Key reused",
            f"Idempotency-Key {exc} was first used for a different request.",
            type=problem_type("idempotency-key-reused"),
        ) from exc
    except IdempotencyKeyInFlight as exc:
        raise Problem(
            409,
            "Idempotency-Key in use",
            "Another request with this Idempotency-Key was handled at the same moment; "
            "retry to receive its response.",
            type=problem_type("idempotency-key-in-use"),
        ) from exc
