"""Ofsted's Annex A list 2 (early help), built from the events kept about each case.

Inspections of local authority children's services (ILACS) and joint targeted area
inspections ask for "Annex A" lists of children; list 2 is early help: every early
help assessment in the months before the inspection, and the early help
interventions open on the inspection date. One row per child per episode of a case.

Pure: the caller hands over each case's events (those recorded by the end of the
`as_at` day) and the children its referrals named, so the list comes out the same
for any past date as the hub would have given it on that day.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from openpyxl import Workbook
from openpyxl.styles import Font

from caseplan import domain
from hub.contracts.allocation import CaseAllocated
from hub.contracts.base import EventData
from hub.contracts.caseplan import AssessmentCompleted, CaseClosed, CaseSteppedDown
from hub.contracts.dates import AUTHORITY_TIME_ZONE, authority_date

# The template's sheet and its headings, in its order (see docs/returns.md for the source).
SHEET = "List 2"
COLUMNS = (
    "Child Unique ID",
    "Gender",
    "Ethnicity",
    "Date of Birth",
    "Age of Child (Years)",
    "Assessment start date",
    "Assessment completion date",
    "Organisation completing assessment",
)
# Annex A writes dates as the template's cells do.
DATE_FORMAT = "%d/%m/%Y"
UNBORN_AGE = -1
# No early help the hub holds is older; an earlier date would also take the look-back
# out of the calendar.
EARLIEST_AS_AT = date(2000, 1, 1)


@dataclass(frozen=True)
class ListedChild:
    """A child a referral (or a step-down) named for the case: what list 2 shows of them."""

    person_id: str
    date_of_birth: date | None
    expected_date_of_birth: date | None


@dataclass(frozen=True)
class Episode:
    """One episode of early help on a case, as far as it had gone by the list's date."""

    case_id: str
    started_on: date
    assessed_on: date | None
    closed_on: date | None
    organisation: str | None


@dataclass(frozen=True)
class Row:
    child_id: str
    gender: str | None
    ethnicity: str | None
    date_of_birth: date | None
    age: int | None
    assessment_started: date
    assessment_completed: date | None
    organisation: str | None

    def values(self) -> tuple:
        return (
            self.child_id,
            self.gender,
            self.ethnicity,
            self.date_of_birth,
            self.age,
            self.assessment_started,
            self.assessment_completed,
            self.organisation,
        )


def recorded_by(as_at: date) -> datetime:
    """The last instant of the list's day in England: what was recorded by then counts."""
    end = datetime.combine(as_at + timedelta(days=1), time.min, tzinfo=AUTHORITY_TIME_ZONE)
    return end - timedelta(microseconds=1)


def look_back_from(as_at: date, months: int) -> date:
    """The first day of the look-back period: `months` calendar months before `as_at`."""
    return domain.add_months(as_at, -months) + timedelta(days=1)


def episodes(case_id: str, events: Iterable[EventData]) -> list[Episode]:
    """The case's episodes from its events in time order: each opens at an allocation that
    starts one (the assessment starts when a worker takes the case), and ends at closure."""
    found: list[Episode] = []
    case = None
    for event in events:
        if case is None and not isinstance(event, CaseAllocated | CaseSteppedDown):
            continue  # recorded before the fact that opened the case: no episode yet
        opens = domain.opens_episode(case, event)
        case = domain.apply(case, event)
        if opens:
            found.append(
                Episode(
                    case_id,
                    authority_date(event.allocated_at),
                    None,
                    None,
                    event.lead_professional.team_name,
                )
            )
        elif not found:
            continue
        elif isinstance(event, AssessmentCompleted) and found[-1].assessed_on is None:
            found[-1] = _replace(found[-1], assessed_on=authority_date(event.completed_at))
        elif isinstance(event, CaseClosed):
            found[-1] = _replace(found[-1], closed_on=authority_date(event.closed_at))
        elif isinstance(event, CaseAllocated):
            # A reallocation: the team completing the assessment is the latest one's.
            found[-1] = _replace(found[-1], organisation=event.lead_professional.team_name)
    return found


def _replace(episode: Episode, **changes) -> Episode:
    return Episode(**{**episode.__dict__, **changes})


def in_list(episode: Episode, since: date) -> bool:
    """An assessment completed in the look-back period, or early help open on `as_at`."""
    assessed_in_period = episode.assessed_on is not None and since <= episode.assessed_on
    open_on_the_day = episode.closed_on is None
    return assessed_in_period or open_on_the_day


def age_on(day: date, child: ListedChild) -> int | None:
    """Whole years at the last birthday; -1 for an unborn child, as the template asks."""
    if child.date_of_birth is None:
        return UNBORN_AGE if child.expected_date_of_birth is not None else None
    born = child.date_of_birth
    if born > day:
        return UNBORN_AGE
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def early_help_list(
    cases: Sequence[tuple[str, Sequence[EventData], Sequence[ListedChild]]],
    as_at: date,
    months: int,
) -> list[Row]:
    """List 2's rows: for each case (its id, its events by `as_at`, its children), every
    child of every episode in the list, oldest assessment first."""
    since = look_back_from(as_at, months)
    rows = []
    for case_id, events, children in cases:
        for episode in episodes(case_id, events):
            if not in_list(episode, since):
                continue
            for child in children:
                rows.append(
                    Row(
                        child_id=child.person_id,
                        # The hub does not collect gender or ethnicity: the authority fills
                        # them from its case management system (docs/returns.md).
                        gender=None,
                        ethnicity=None,
                        date_of_birth=child.date_of_birth or child.expected_date_of_birth,
                        age=age_on(as_at, child),
                        assessment_started=episode.started_on,
                        assessment_completed=episode.assessed_on,
                        organisation=episode.organisation,
                    )
                )
    rows.sort(key=lambda row: (row.assessment_started, row.child_id))
    return rows


def stepped_down_children(events: Iterable[EventData]) -> list[ListedChild]:
    return [
        ListedChild(str(child.person_id), child.date_of_birth, None)
        for event in events
        if isinstance(event, CaseSteppedDown)
        for child in event.children
    ]


# --- the files --------------------------------------------------------------------------


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.strftime(DATE_FORMAT)
    return str(value)


def as_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(value) for value in row.values()])
    return out.getvalue()


def as_xlsx(rows: Sequence[Row]) -> bytes:
    """The template's sheet and headings; dates as date cells shown dd/mm/yyyy."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET
    sheet.append(COLUMNS)
    for heading in sheet[1]:
        heading.font = Font(bold=True)
    for row in rows:
        sheet.append(row.values())
    for column in ("D", "F", "G"):
        for cell in sheet[column][1:]:
            cell.number_format = "dd/mm/yyyy"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
