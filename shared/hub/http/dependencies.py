"""FastAPI dependencies every service's HTTP layer shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header

from hub.clock import utc_now
from hub.contracts.dates import judge_dates_at
from hub.idempotency import IDEMPOTENCY_HEADER


async def clock() -> datetime:
    """The time now, in UTC: a dependency, so that tests override it on one app
    (`app.dependency_overrides[clock]`) to control deadlines and due dates."""
    return utc_now()


Now = Annotated[datetime, Depends(clock)]


async def judge_request_dates(now: Now) -> None:
    """Every route's first dependency: FastAPI solves it before it reads the body, so a
    date of birth in the body is judged against the same clock the route sees.

    Async, so that it runs in the request's own context rather than a worker thread's.
    """
    judge_dates_at(now)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="Repeat a POST safely: the same key and body return the first response.",
    ),
]
