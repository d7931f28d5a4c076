"""The event store: append-only streams with optimistic concurrency, and the outbox.

Appends are serialised per database (SQLite: one writer at a time; PostgreSQL: a
transaction-scoped advisory lock taken before the insert), so positions are
assigned in commit order and `read_all` can never step over an event that a
slower transaction is about to commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import Connection, DateTime, String, bindparam, func, insert, literal, select, text

from hub import family_order
from hub.contracts.base import EventData
from hub.contracts.registry import event_model
from hub.tables import event_store, outbox

# Any constant will do: it only has to be the same for every writer of one database.
_APPEND_LOCK_KEY = 0x4541524C59  # "EARLY"


class ConcurrencyConflict(Exception):
    """The stream moved on since the caller read it."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, "
            f"not the expected {expected_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


@dataclass(frozen=True)
class PendingEvent:
    """An event decided by the domain, not yet stored."""

    data: EventData
    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    family_id: str
    subject: str | None
    occurred_at: datetime
    data_json: str
    actor: str | None
    traceparent: str | None
    tracestate: str | None
    follows: str | None = None

    def decode(self) -> EventData:
        return event_model(self.event_type).model_validate_json(self.data_json)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.data_json)


RECORDED_COLUMNS = (
    event_store.c.position,
    event_store.c.stream_id,
    event_store.c.stream_version,
    event_store.c.event_id,
    event_store.c.event_type,
    event_store.c.schema_version,
    event_store.c.family_id,
    event_store.c.subject,
    event_store.c.occurred_at,
    event_store.c.data,
    event_store.c.actor,
    event_store.c.traceparent,
    event_store.c.tracestate,
    event_store.c.follows,
)


# Built once: statements given their values at execution skip per-call compilation.
_INSERT_EVENT = insert(event_store).returning(event_store.c.position)
_INSERT_OUTBOX = insert(outbox)
_STREAM_VERSION = select(func.coalesce(func.max(event_store.c.stream_version), 0)).where(
    event_store.c.stream_id == bindparam("stream_id")
)
_STREAM_VERSION_AND_HEAD = select(
    _STREAM_VERSION.scalar_subquery(), family_order.HEAD.scalar_subquery()
)


def _chain_within_families(
    conn: Connection, rows: list[dict[str, Any]], heads: dict[str, str | None]
) -> None:
    """Each new event follows the latest event of its family the service knows (`heads`,
    read here for a family not in it); the last one of each family becomes its head."""
    for row in rows:
        family = row["family_id"]
        if family not in heads:
            heads[family] = family_order.head_of(conn, family)
        row["follows"] = heads[family]
        heads[family] = row["event_id"]
    latest = {row["family_id"]: row for row in rows}
    for family, row in latest.items():
        family_order.advance(conn, family, row["event_id"], row["occurred_at"], consumed=False)


def recorded_from_row(row: Any) -> RecordedEvent:
    return RecordedEvent(
        position=row.position,
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        event_id=row.event_id,
        event_type=row.event_type,
        schema_version=row.schema_version,
        family_id=row.family_id,
        subject=row.subject,
        occurred_at=row.occurred_at,
        data_json=row.data,
        actor=row.actor,
        traceparent=row.traceparent,
        tracestate=row.tracestate,
        follows=row.follows,
    )


class EventStore:
    """Streams of one service's events; every append also enqueues them for the relay."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def append(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: int,
        events: Sequence[PendingEvent],
        *,
        actor: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> list[RecordedEvent]:
        """Append after `expected_version` (0 for a new stream) or raise ConcurrencyConflict."""
        if not events:
            return []
        self.serialise_appends(conn)
        family = str(events[0].data.family_id)
        # One statement for both: each costs more in the driver than in SQLite.
        actual, head = conn.execute(
            _STREAM_VERSION_AND_HEAD, {"stream_id": stream_id, "family_id": family}
        ).one()
        if actual != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, actual)
        now = datetime.now(UTC)
        rows = [
            {
                "stream_id": stream_id,
                "stream_version": expected_version + offset,
                "event_id": str(pending.event_id),
                "event_type": pending.data.event_type,
                "schema_version": pending.data.schema_version,
                "family_id": str(pending.data.family_id),
                "subject": pending.data.subject(),
                "occurred_at": pending.occurred_at,
                "data": pending.data.model_dump_json(),
                "actor": actor,
                "traceparent": traceparent,
                "tracestate": tracestate,
            }
            for offset, pending in enumerate(events, start=1)
        ]
        _chain_within_families(conn, rows, {family: head})
        recorded = []
        for row in rows:
            position = conn.execute(_INSERT_EVENT, row).scalar_one()
            recorded.append(
                RecordedEvent(
                    position=position,
                    data_json=row["data"],
                    **{k: v for k, v in row.items() if k != "data"},
                )
            )
        conn.execute(
            _INSERT_OUTBOX,
            [{"position": e.position, "topic": self.topic, "enqueued_at": now} for e in recorded],
        )
        return recorded

    @staticmethod
    def serialise_appends(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
        # SQLite writers already hold the database's single write lock (BEGIN IMMEDIATE).

    @staticmethod
    def stream_version(conn: Connection, stream_id: str) -> int:
        return conn.execute(_STREAM_VERSION, {"stream_id": stream_id}).scalar_one()

    @staticmethod
    def read_stream(conn: Connection, stream_id: str) -> list[RecordedEvent]:
        rows = conn.execute(
            select(*RECORDED_COLUMNS)
            .where(event_store.c.stream_id == stream_id)
            .order_by(event_store.c.stream_version)
        )
        return [recorded_from_row(row) for row in rows]

    @staticmethod
    def read_all(
        conn: Connection, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Events after `after_position` in commit order; never skips one (see module doc)."""
        rows = conn.execute(
            select(*RECORDED_COLUMNS)
            .where(event_store.c.position > after_position)
            .order_by(event_store.c.position)
            .limit(limit)
        )
        return [recorded_from_row(row) for row in rows]

    @staticmethod
    def last_position(conn: Connection) -> int:
        return conn.execute(select(func.coalesce(func.max(event_store.c.position), 0))).scalar_one()

    def enqueue_from(self, conn: Connection, from_position: int) -> int:
        """Queue every stored event at or after `from_position` for publishing again."""
        already_queued = select(outbox.c.position)
        source = select(
            event_store.c.position,
            literal(self.topic, String()),
            literal(datetime.now(UTC), DateTime(timezone=True)),
        ).where(
            event_store.c.position >= from_position,
            event_store.c.position.not_in(already_queued),
        )
        queued = conn.execute(
            insert(outbox)
            .from_select(["position", "topic", "enqueued_at"], source)
            .returning(outbox.c.position)
        )
        return len(queued.all())
