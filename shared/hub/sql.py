"""Where SQLite and PostgreSQL differ: insert-if-absent, upsert, and timestamps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Table, TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite


@lru_cache(maxsize=256)
def _insert_if_absent_statement(dialect_name: str, table: Table):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    key = table.primary_key.columns.values()[0]
    return dialect.insert(table).on_conflict_do_nothing().returning(key)


@lru_cache(maxsize=256)
def _upsert_statement(
    dialect_name: str, table: Table, columns: tuple[str, ...], key: tuple[str, ...]
):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in columns if name not in key},
    )


# Statements are built once per table and given their values at execution:
# building `.values(...)` anew on every call costs more than running it.


def insert_if_absent(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert a row unless its key exists; True when this call inserted it."""
    statement = _insert_if_absent_statement(conn.dialect.name, table)
    # rowcount is not reliable here across drivers; a returned row is.
    return conn.execute(statement, dict(values)).first() is not None


@lru_cache(maxsize=256)
def _insert_all_if_absent_statement(dialect_name: str, table: Table):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def insert_all_if_absent(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert each row unless its key exists, in one executemany."""
    if rows:
        conn.execute(_insert_all_if_absent_statement(conn.dialect.name, table), list(rows))


def upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    key: Sequence[str],
) -> None:
    """Insert a row, or update its non-key columns when the key exists."""
    statement = _upsert_statement(conn.dialect.name, table, tuple(values), tuple(key))
    conn.execute(statement, dict(values))


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
