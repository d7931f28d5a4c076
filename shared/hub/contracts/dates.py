"""Dates a request may not put after "today", and the today they are judged against.

A child born after today, or consent given in the future, is a mistake in the partner's
system, never a fact the hub should store. Whether a date is after today depends on
when the request is read, so the check cannot be a pure function of the value: the HTTP
layer tells this module the instant it read the request at (`judge_dates_at`, from the
service's clock, which tests fix), and the validators below compare against it while
pydantic reads the request's body. The refusal is then an ordinary validation error,
named by field, in the same 422 as every other invalid field.

Outside a request (an event read back from Kafka, a model built in Python) no instant
is set and nothing is judged: a fact recorded yesterday stays valid whatever the clock.
Each request runs in its own task, with its own copy of the context, so an instant set
for one never reaches another.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

# Every authority the hub serves is English: "today" is the day in England.
AUTHORITY_TIME_ZONE = ZoneInfo("Europe/London")
# A partner's clock a little ahead of the hub's is not consent given in the future.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)

_request_read_at: ContextVar[datetime | None] = ContextVar("request_read_at", default=None)


def authority_date(instant: datetime) -> date:
    """The calendar day `instant` falls on in the authority's time zone."""
    return instant.astimezone(AUTHORITY_TIME_ZONE).date()


def judge_dates_at(now: datetime) -> None:
    """Judge the dates of the request being read (in this context) against `now`."""
    _request_read_at.set(now)


def _not_after_today(value: date) -> date:
    now = _request_read_at.get()
    if now is not None and value > authority_date(now):
        raise PydanticCustomError("date_in_future", "Date must not be after today")
    return value


def _not_in_future(value: datetime) -> datetime:
    now = _request_read_at.get()
    if now is not None and value > now + CLOCK_SKEW_ALLOWANCE:
        raise PydanticCustomError("datetime_in_future", "Date-time must not be in the future")
    return value


# Annotate a date with it: no later than the day the request is read (a date of birth).
NotAfterToday = AfterValidator(_not_after_today)
# Annotate a date-time with it: no later than the request is read (when consent was given).
NotInFuture = AfterValidator(_not_in_future)
