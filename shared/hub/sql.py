"""Where SQLite and PostgreSQL differ: insert-if-absent, upsert, and timestamps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Table, TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: Connection, table: Table):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def insert_if_absent(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert a row unless its key exists; True when this call inserted it."""
    key = table.primary_key.columns.values()[0]
    statement = _insert(conn, table).values(**values).on_conflict_do_nothing().returning(key)
    # rowcount is not reliable here across drivers; a returned row is.
    return conn.execute(statement).first() is not None


def upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    key: Sequence[str],
) -> None:
    """Insert a row, or update its non-key columns when the key exists."""
    statement = _insert(conn, table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in values if name not in key},
    )
    conn.execute(statement)


class UtcDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC when read, on SQLite as on PostgreSQL.

    SQLite keeps no offset, so values are normalised to UTC on the way in and
    given back their UTC offset on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given: the hub stores aware UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
