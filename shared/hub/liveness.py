"""Whether a service is running against a database, for the commands that need it stopped.

A rebuild empties read models and replays history into them; a service consuming and
serving at the same time would mark live events applied against emptied tables (the
rebuild then skips them) and answer from half-built ones. So every running service
marks its database, and `earlyhelp rebuild` refuses while a mark is held:

- **PostgreSQL:** the service's connections carry `application_name`
  `earlyhelp-<service>`; the command looks for such sessions in `pg_stat_activity`
  (a stopped or killed process has none; a process that is only stalled still counts).
- **SQLite:** the service holds a shared `flock` on `<database>.serving` for as long as
  it runs; the command takes it exclusively for as long as it works, so a service
  started meanwhile refuses to start rather than interleave. The lock dies with the
  process, however it ends.

Kafka's view of the consumer group is not used: kafka-python's `describe_groups`
fails against the embedded broker (Tansu), and a service without a consumer (intake)
has no group at all.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


class ServiceRunning(RuntimeError):
    """The service is running against the database; the message says how it was seen."""


def application_name(service: str) -> str:
    return f"earlyhelp-{service}"


def _mark_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(f"{url.database}.serving")


class ServingMark:
    """Held by a running service process: see the module's docstring."""

    def __init__(self, database_url: str) -> None:
        self._path = _mark_path(database_url)
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._path is None or self._fd is not None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServiceRunning(
                f"a rebuild holds {self._path}: start the service when it has finished"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def running_sessions(database_url: str, service: str) -> list[str]:
    """PostgreSQL sessions of the running service, described without personal data."""
    engine = create_engine(database_url, poolclass=NullPool, hide_parameters=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, client_addr, backend_start FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = :name "
                    "AND pid <> pg_backend_pid() ORDER BY backend_start"
                ),
                {"name": application_name(service)},
            ).all()
    finally:
        engine.dispose()
    return [f"session {row.pid} from {row.client_addr or 'local'}" for row in rows]


@contextmanager
def service_stopped(database_url: str, service: str) -> Iterator[None]:
    """Hold the database for a command that needs the service stopped, or raise
    ServiceRunning naming what shows it running."""
    path = _mark_path(database_url)
    if path is None:
        if make_url(database_url).get_backend_name() == "postgresql":
            sessions = running_sessions(database_url, service)
            if sessions:
                raise ServiceRunning(
                    f"{service} is running: {len(sessions)} database sessions of "
                    f"{application_name(service)} ({', '.join(sessions[:5])})"
                )
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceRunning(
                f"{service} is running: a process holds {path} (its serving mark)"
            ) from None
        yield
    finally:
        os.close(fd)
