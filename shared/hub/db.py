"""Database engines and the transaction boundary every write goes through.

SQLite (the embedded default) and PostgreSQL run the same code. Writers are
serialised per database so that the event store's global position always grows
in commit order; see `EventStore.append`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url


class Database:
    """One service's database: a reader engine and a writer engine over one pool."""

    def __init__(
        self, url: str, *, pool_size: int = 10, application_name: str | None = None
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"check_same_thread": False, "timeout": 30},
                hide_parameters=True,
            )
            _configure_sqlite(self.engine)
        else:
            # application_name: what a running service's sessions are known by
            # (hub.liveness), and what an operator sees in pg_stat_activity.
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                hide_parameters=True,
                connect_args={"application_name": application_name} if application_name else {},
            )
        # The writer engine shares the pool; on SQLite its transactions start with
        # BEGIN IMMEDIATE so two writers never deadlock upgrading a read lock.
        self._writer: Engine = self.engine.execution_options(hub_writer=True)
        self._sqlite_writer_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction: committed when the block ends, rolled back on error."""
        if self._sqlite_writer_lock is None:
            with self._writer.begin() as conn:
                yield conn
            return
        # SQLite has one writer at a time; queueing writers here, rather than in
        # SQLite's busy handler (which sleeps and retries), keeps the tail short.
        with self._sqlite_writer_lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def check(self) -> None:
        """Readiness: raises when the database cannot answer a query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writer = conn.get_execution_options().get("hub_writer", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
