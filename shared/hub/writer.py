"""Group commit: one writer thread runs queued write transactions together.

Each piece of work gets its own savepoint inside a shared transaction, so one
that fails is rolled back alone, and none is answered before the shared commit
succeeded. Concurrent requests then cost one BEGIN and one COMMIT between them,
and the database's single write lock (SQLite) is never fought over; their answers
go back to the event loop in one hop per group, not one wake-up per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from hub.db import Database
from hub.privacy import describe_error

log = logging.getLogger(__name__)

Work = Callable[[Connection], Any]


@dataclass
class _Queued:
    work: Work
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


Outcome = tuple[_Queued, Any, BaseException | None]


def _settle(outcomes: list[Outcome]) -> None:
    """On the event loop: answer every waiting caller of one group."""
    for queued, value, error in outcomes:
        if queued.future.done():  # the caller was cancelled; its work still committed
            continue
        if error is None:
            queued.future.set_result(value)
        else:
            queued.future.set_exception(error)


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
        loop = asyncio.get_running_loop()
        queued = _Queued(work, contextvars.copy_context(), loop, loop.create_future())
        self._queue.put(queued)
        return await queued.future

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
        outcomes: list[Outcome] = []
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
            log.error("a group commit of %d writes failed: %s", len(batch), describe_error(exc))
            self._answer([(queued, None, exc) for queued in batch])
            return
        self._after_commit()
        self._answer(outcomes)

    @staticmethod
    def _answer(outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # the loop has closed: nobody is left waiting
                log.debug("%d answers had no event loop to go to", len(answers))
