"""Group commit: one writer thread runs queued write transactions together.

The pieces of work run in one shared transaction, and none is answered before
its commit succeeded. One that fails is undone alone: the group is undone and run
again with a savepoint around each piece (a group with no failure, the usual
case, pays for no savepoint). Concurrent requests then cost one BEGIN and one COMMIT between them,
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


class _WriteFailed(Exception):
    """A write of a group without savepoints failed: the group's transaction is undone."""

    def __init__(self, queued: _Queued, error: Exception) -> None:
        super().__init__(str(error))
        self.queued = queued
        self.error = error


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
        try:
            # Most groups have no failing write, so they run without a savepoint around each
            # (two statements apiece). A write that fails undoes the whole group, which runs
            # again with a savepoint around each write, so the failing one alone is undone.
            # Nothing is answered before the group's commit, so running a write again is
            # as if it had run once.
            outcomes = self._transact(batch, isolated=False)
            if outcomes is None:
                outcomes = self._transact(batch, isolated=True)
        except Exception as exc:
            log.error("a group commit of %d writes failed: %s", len(batch), describe_error(exc))
            self._answer([(queued, None, exc) for queued in batch])
            return
        self._after_commit()
        self._answer(outcomes)

    def _transact(self, batch: list[_Queued], *, isolated: bool) -> list[Outcome] | None:
        """The group in one transaction, committed; None (all undone) when a write of a
        group of several failed and they were not `isolated` by savepoints."""
        outcomes: list[Outcome] = []
        try:
            with self._db.write() as conn:
                for queued in batch:
                    savepoint = conn.begin_nested() if isolated else None
                    try:
                        value = queued.context.run(queued.work, conn)
                    except Exception as exc:
                        if savepoint is None:
                            raise _WriteFailed(queued, exc) from exc
                        savepoint.rollback()
                        outcomes.append((queued, None, exc))
                    else:
                        if savepoint is not None:
                            savepoint.commit()
                        outcomes.append((queued, value, None))
        except _WriteFailed as failed:
            if len(batch) > 1:
                return None
            # Alone in its group: undoing the group undid it, and nothing else.
            return [(failed.queued, None, failed.error)]
        return outcomes

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
