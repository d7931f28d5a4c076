"""FastAPI dependencies every service's HTTP layer shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header

from hub.clock import utc_now
from hub.idempotency import IDEMPOTENCY_HEADER


async def clock() -> datetime:
    """The time now, in UTC: a dependency, so that tests override it on one app
    (`app.dependency_overrides[clock]`) to control deadlines and due dates."""
    return utc_now()


Now = Annotated[datetime, Depends(clock)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=255,
        description="Repeat a POST safely: the same key and body return the first response.",
    ),
]
