"""Which event of a family each new event follows: the hub's order across services' topics.

Kafka keeps a family's events in order within one topic only. So that a consumer
of several topics can restore a family's order without waiting on the clock, every
event names the family's event it follows (the CloudEvent extension `follows`, an
event id, never a personal value): the latest event of the family the producing
service knew when it decided, whether its own or one it had consumed. A consumer
that reads an event whose predecessor it has not yet seen knows exactly what is
missing, and waits for that only (see notifications' fan-out).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from hub.tables import family_heads

HEAD = select(family_heads.c.event_id).where(family_heads.c.family_id == bindparam("family_id"))


@lru_cache(maxsize=4)
def _advance_statement(dialect_name: str, consumed: bool):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(family_heads)
    return statement.on_conflict_do_update(
        index_elements=[family_heads.c.family_id],
        set_={
            "event_id": statement.excluded.event_id,
            "occurred_at": statement.excluded.occurred_at,
        },
        # A consumed event older than the head (read late from its topic) does not move
        # it back; the service's own event was decided knowing the head, so it follows it.
        where=family_heads.c.occurred_at <= statement.excluded.occurred_at if consumed else None,
    )


def head_of(conn: Connection, family_id: str) -> str | None:
    """The id of the latest event of the family the service knows, if any."""
    return conn.execute(HEAD, {"family_id": family_id}).scalar()


def advance(
    conn: Connection, family_id: str, event_id: str, occurred_at: datetime, *, consumed: bool
) -> None:
    """The service now knows this event of the family: its own, just appended, or one it
    `consumed` from another service's topic."""
    conn.execute(
        _advance_statement(conn.dialect.name, consumed),
        {"family_id": family_id, "event_id": event_id, "occurred_at": occurred_at},
    )
