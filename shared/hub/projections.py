"""Projections: read models fed by events, each exactly once, checkpointed, rebuildable.

A projection records every event id it applies in the inbox, in the same
transaction as its own rows and its checkpoint, so a redelivered or republished
event has no second effect and a rebuild can start from nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Table, delete

from hub.contracts.base import EventData
from hub.sql import insert_if_absent, upsert
from hub.tables import inbox, projection_checkpoints

STORE_ORIGIN = "store"


@dataclass(frozen=True)
class EventMeta:
    """What a handler may need besides the event's data: identity, origin and time."""

    event_id: str
    event_type: str
    producer: str
    occurred_at: datetime
    family_id: str
    subject: str | None
    # "store" for the service's own events, "<topic>/<partition>" for Kafka
    origin: str
    position: int
    # The family's event this one follows, as its producer knew the family (hub.family_order).
    follows: str | None = None


Handler = Callable[[Connection, EventData, EventMeta], None]


class Projection:
    """A named read model: its tables and one handler per event type it follows."""

    def __init__(self, name: str, tables: Sequence[Table]) -> None:
        self.name = name
        self.tables = tuple(tables)
        self._handlers: dict[str, Handler] = {}

    def on(self, event_class: type[EventData]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._handlers[event_class.event_type] = handler
            return handler

        return register

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handles(self, event_type: str) -> bool:
        return event_type in self._handlers

    def apply(self, conn: Connection, data: EventData, meta: EventMeta) -> bool:
        """Apply once; False (and no effect) when this projection has seen the event."""
        first_time = insert_if_absent(
            conn,
            inbox,
            {"projection": self.name, "event_id": meta.event_id, "handled_at": datetime.now(UTC)},
        )
        if not first_time:
            return False
        self._handlers[meta.event_type](conn, data, meta)
        upsert(
            conn,
            projection_checkpoints,
            {
                "projection": self.name,
                "source": meta.origin,
                "position": meta.position,
                "updated_at": datetime.now(UTC),
            },
            key=("projection", "source"),
        )
        return True

    def reset(self, conn: Connection) -> None:
        """Forget everything, so that a replay rebuilds the read model from nothing."""
        for table in reversed(self.tables):
            conn.execute(delete(table))
        conn.execute(delete(inbox).where(inbox.c.projection == self.name))
        conn.execute(
            delete(projection_checkpoints).where(projection_checkpoints.c.projection == self.name)
        )


def checkpoints(conn: Connection, projection: str) -> dict[str, int]:
    rows = conn.execute(
        projection_checkpoints.select().where(projection_checkpoints.c.projection == projection)
    )
    return {row.source: row.position for row in rows}
