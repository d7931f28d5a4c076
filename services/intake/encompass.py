"""Operation Encompass: the school calendar, each notice's deadline, and the notice aggregate.

Pure: no I/O and no clock of its own. A police notification about a domestic abuse
incident gives each child one notice, due before the start of the next school day by
the authority's calendar (`config/school-calendar.yaml`); the child's school
acknowledges it, or the front door is alerted an hour (configurable) before the
deadline; a notice whose child has no known school alerts the front door at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.contracts.base import EventData
from hub.contracts.codes import EncompassAlertReason, IncidentLocation
from hub.contracts.intake import (
    EncompassChild,
    EncompassNoticeAcknowledged,
    EncompassNoticeAlerted,
    EncompassNoticeIssued,
)
from hub.refusals import Conflict, NotFound
from hub.schools import School

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WEEKDAYS: tuple[str, ...] = Weekday.__args__  # type: ignore[attr-defined]
# A calendar with no school day within a year and a half is a mistake, not a holiday.
_LONGEST_CLOSURE_DAYS = 550


class CalendarError(ValueError):
    """The school calendar file is not one the hub can use."""


class Closure(BaseModel):
    """Days no school of the authority opens: a holiday, a bank holiday, a training day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: date
    last: date | None = Field(default=None, description="The last day closed; one day if absent.")
    name: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        if self.last is not None and self.last < self.first:
            raise ValueError(f"closure {self.name!r} ends before it starts")
        return self

    def covers(self, day: date) -> bool:
        return self.first <= day <= (self.last or self.first)


class SchoolCalendar(BaseModel):
    """One authority's school days, in its own time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    authority: str = Field(min_length=1, max_length=64)
    time_zone: str = "Europe/London"
    school_day_starts_at: time = time(8, 30)
    alert_before_minutes: int = Field(default=60, ge=0, le=24 * 60)
    weekend: tuple[Weekday, ...] = ("saturday", "sunday")
    closures: tuple[Closure, ...] = ()

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @classmethod
    def load(cls, path: Path) -> SchoolCalendar:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise CalendarError(f"school calendar {path} is not usable: {exc}") from exc

    @property
    def alert_lead(self) -> timedelta:
        return timedelta(minutes=self.alert_before_minutes)

    def is_school_day(self, day: date) -> bool:
        if _WEEKDAYS[day.weekday()] in self.weekend:
            return False
        return not any(closure.covers(day) for closure in self.closures)

    def next_school_day_start(self, moment: datetime) -> datetime:
        """The first start of a school day after `moment`, in UTC.

        Before the start on a school day, that day's start (the child arrives that
        morning); otherwise the start of the next school day.
        """
        zone = ZoneInfo(self.time_zone)
        local = moment.astimezone(zone)
        day = local.date()
        for _ in range(_LONGEST_CLOSURE_DAYS):
            if self.is_school_day(day):
                # Built in local time, so a change to or from summer time is respected.
                start = datetime.combine(day, self.school_day_starts_at, tzinfo=zone)
                if start > local:
                    return start.astimezone(UTC)
            day += timedelta(days=1)
        raise CalendarError(
            f"the {self.authority} school calendar has no school day within"
            f" {_LONGEST_CLOSURE_DAYS} days of {local.date().isoformat()}"
        )


# --- the notice aggregate -------------------------------------------------------------


class NoticeNotFound(NotFound):
    """No such notice for this school (another school's notice is as unknown to it)."""

    def __init__(self, notice_id: UUID) -> None:
        super().__init__(f"No Operation Encompass notice {notice_id} for your school.")


class NoticeRuleBroken(Conflict):
    problem = "encompass-notice-conflict"
    title = "Not possible now"


@dataclass(frozen=True)
class Notice:
    notice_id: UUID
    referral_id: UUID
    family_id: UUID
    school_id: str | None
    due_by: datetime
    version: int
    acknowledged_at: datetime | None = None
    alerted_unacknowledged: bool = False


@dataclass(frozen=True)
class NoticeChild:
    """One child of a police notification, with the school the hub found for them."""

    child: EncompassChild
    school: SchoolChoice


@dataclass(frozen=True)
class SchoolChoice:
    school_id: str | None
    school_urn: str | None
    known_from: Literal["notification", "hub_record"] | None


def choose_school(
    named: School | None, urn_given: str | None, recorded_school_id: str | None
) -> SchoolChoice:
    """The school police named, if it is one of the authority's; else the school staff
    last recorded for the child; else none (keeping the URN police gave, for the front
    door to find the school by)."""
    if named is not None:
        return SchoolChoice(named.school_id, named.urn, "notification")
    if recorded_school_id is not None:
        return SchoolChoice(recorded_school_id, urn_given, "hub_record")
    return SchoolChoice(None, urn_given, None)


@dataclass(frozen=True)
class IssueNotices:
    referral_id: UUID
    family_id: UUID
    police_force: str
    police_reference: str
    incident_at: datetime
    location_type: IncidentLocation
    domestic_abuse: bool
    children: tuple[NoticeChild, ...]
    issued_at: datetime


@dataclass(frozen=True)
class AcknowledgeNotice:
    """The school acknowledges its notice (`school_id` its own), or the front door records
    that it told the school by telephone (`school_id` None: whichever school it was)."""

    notice_id: UUID
    school_id: str | None
    acknowledged_by: str
    acknowledged_at: datetime
    by_telephone: bool = False


def stream_id(notice_id: UUID) -> str:
    return f"encompass-notice-{notice_id}"


def notice_id_of(referral_id: UUID, child_position: int) -> UUID:
    """The notice of the referral's nth child: the same on every decision of the command."""
    return uuid5(referral_id, f"encompass/{child_position}")


def issue(command: IssueNotices, calendar: SchoolCalendar) -> list[tuple[UUID, list[EventData]]]:
    """One notice per child, each due at the next school day's start; a child with no
    known school alerts the front door at once. Returns each notice's id and events."""
    due_by = calendar.next_school_day_start(command.issued_at)
    notices: list[tuple[UUID, list[EventData]]] = []
    for position, child in enumerate(command.children):
        notice_id = notice_id_of(command.referral_id, position)
        issued = EncompassNoticeIssued(
            referral_id=command.referral_id,
            family_id=command.family_id,
            notice_id=notice_id,
            police_force=command.police_force,
            police_reference=command.police_reference,
            incident_at=command.incident_at,
            location_type=command.location_type,
            domestic_abuse=command.domestic_abuse,
            child=child.child,
            school_id=child.school.school_id,
            school_urn=child.school.school_urn,
            school_known_from=child.school.known_from,
            issued_at=command.issued_at,
            due_by=due_by,
        )
        events: list[EventData] = [issued]
        if child.school.school_id is None:
            events.append(
                EncompassNoticeAlerted(
                    referral_id=command.referral_id,
                    family_id=command.family_id,
                    notice_id=notice_id,
                    reason=EncompassAlertReason.NO_SCHOOL,
                    due_by=due_by,
                    alerted_at=command.issued_at,
                )
            )
        notices.append((notice_id, events))
    return notices


def acknowledge(current: Notice | None, command: AcknowledgeNotice) -> list[EventData]:
    """The notice's own school acknowledges it, or the front door for it after telephoning;
    a second acknowledgement changes nothing."""
    if current is None or (not command.by_telephone and current.school_id != command.school_id):
        raise NoticeNotFound(command.notice_id)
    if current.acknowledged_at is not None:
        return []
    return [
        EncompassNoticeAcknowledged(
            referral_id=current.referral_id,
            family_id=current.family_id,
            notice_id=current.notice_id,
            school_id=current.school_id,
            acknowledged_at=command.acknowledged_at,
            acknowledged_by=command.acknowledged_by,
            by_telephone=command.by_telephone,
            in_time=command.acknowledged_at < current.due_by,
        )
    ]


def alert_if_due(current: Notice, now: datetime, lead: timedelta) -> list[EventData]:
    """Alert the front door once when a school's notice is still unacknowledged `lead`
    before its deadline (or later)."""
    if (
        current.school_id is None
        or current.acknowledged_at is not None
        or current.alerted_unacknowledged
        or now < current.due_by - lead
    ):
        return []
    return [
        EncompassNoticeAlerted(
            referral_id=current.referral_id,
            family_id=current.family_id,
            notice_id=current.notice_id,
            reason=EncompassAlertReason.UNACKNOWLEDGED,
            school_id=current.school_id,
            due_by=current.due_by,
            alerted_at=now,
        )
    ]


def apply(current: Notice | None, event: EventData) -> Notice:
    if isinstance(event, EncompassNoticeIssued):
        if current is not None:
            raise NoticeRuleBroken(f"notice {event.notice_id} was issued twice")
        return Notice(
            notice_id=event.notice_id,
            referral_id=event.referral_id,
            family_id=event.family_id,
            school_id=event.school_id,
            due_by=event.due_by,
            version=1,
        )
    if current is None:
        raise NoticeRuleBroken(f"{event.event_type} before the notice was issued")
    version = current.version + 1
    if isinstance(event, EncompassNoticeAcknowledged):
        return replace(current, acknowledged_at=event.acknowledged_at, version=version)
    if isinstance(event, EncompassNoticeAlerted):
        unacknowledged = event.reason is EncompassAlertReason.UNACKNOWLEDGED
        return replace(
            current,
            alerted_unacknowledged=current.alerted_unacknowledged or unacknowledged,
            version=version,
        )
    raise NoticeRuleBroken(f"a notice does not follow {event.event_type}")


def replay(events) -> Notice | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
