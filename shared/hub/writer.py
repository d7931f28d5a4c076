"""Group commit: one writer thread runs queued write transactions together.

Each piece of work gets its own savepoint inside a shared transaction, so one
that fails is rolled back alone, and none is answered before the shared commit
succeeded. Concurrent requests then cost one BEGIN and one COMMIT between them,
and the database's single write lock (SQLite) is never fought over.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from hub.db import Database

log = logging.getLogger(__name__)

Work = Callable[[Connection], Any]


@dataclass
class _Queued:
    work: Work
    context: contextvars.Context
    future: Future = field(default_factory=Future)


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        name: str,
        *,
        after_commit: Callable[[], None] = lambda: None,
        max_batch: int = 64,
    ) -> None:
        self._db = db
        self._after_commit = after_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    async def run(self, work: Work) -> Any:
        """Run `work(conn)` in the next group transaction, in the caller's context."""
        queued = _Queued(work, contextvars.copy_context())
        self._queue.put(queued)
        return await asyncio.wrap_future(queued.future)

    def close(self) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    stopping = True
                    break
                batch.append(queued)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[_Queued]) -> None:
        outcomes: list[tuple[_Queued, Any, BaseException | None]] = []
        try:
            with self._db.write() as conn:
                for queued in batch:
                    savepoint = conn.begin_nested()
                    try:
                        value = queued.context.run(queued.work, conn)
                    except Exception as exc:
                        savepoint.rollback()
                        outcomes.append((queued, None, exc))
                    else:
                        savepoint.commit()
                        outcomes.append((queued, value, None))
        except Exception as exc:
            log.error("a group commit of %d writes failed: %s", len(batch), exc)
            for queued in batch:
                queued.future.set_exception(exc)
            return
        self._after_commit()
        for queued, value, error in outcomes:
            if error is None:
                queued.future.set_result(value)
            else:
                queued.future.set_exception(error)
