"""`Idempotency-Key` for POSTs that create something.

The first response to a key is stored in the same transaction as the command's
events, so a retry returns exactly that response and changes nothing; the same
key with a different request is refused rather than silently answered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from hub.sql import insert_if_absent
from hub.tables import idempotency_keys

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


class IdempotencyKeyReused(Exception):
    """The key was first used for a different request."""


class IdempotencyKeyInFlight(Exception):
    """Another request with this key committed while this one was being handled."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str
    headers: dict[str, str]


def fingerprint(method: str, path: str, canonical_body: str) -> str:
    return hashlib.sha256(f"{method} {path}\n{canonical_body}".encode()).hexdigest()


def previous_response(
    conn: Connection, principal: str, key: str, request_fingerprint: str
) -> StoredResponse | None:
    """The stored response for this key, None for a new key; raises if the request differs."""
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.principal == principal,
            idempotency_keys.c.idempotency_key == key,
        )
    ).first()
    if row is None:
        return None
    if row.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(key)
    return StoredResponse(row.status_code, row.response_body, json.loads(row.response_headers))


def remember_response(
    conn: Connection,
    principal: str,
    key: str,
    request_fingerprint: str,
    response: StoredResponse,
) -> None:
    stored = insert_if_absent(
        conn,
        idempotency_keys,
        {
            "principal": principal,
            "idempotency_key": key,
            "request_fingerprint": request_fingerprint,
            "status_code": response.status_code,
            "response_body": response.body,
            "response_headers": json.dumps(response.headers, sort_keys=True),
            "created_at": datetime.now(UTC),
        },
    )
    if not stored:
        raise IdempotencyKeyInFlight(key)
