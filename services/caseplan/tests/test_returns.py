"""Ofsted Annex A list 2 (early help) from a case's events, without I/O: who is listed
as at a date, with which dates and age, and the files' exact headings."""

import csv
import io
from datetime import UTC, date, datetime

from openpyxl import load_workbook

from caseplan import returns
from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import AssessmentCompleted, CaseClosed

ALLOCATED = CaseAllocated.example()
TEAM = ALLOCATED.lead_professional.team_name
AMIRA = returns.ListedChild("c1", date(2015, 6, 12), None)
UNBORN = returns.ListedChild("c2", None, date(2026, 8, 1))


def _at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def _allocated(day):
    return ALLOCATED.model_copy(update={"allocated_at": _at(day)})


def _assessed(day):
    return AssessmentCompleted.example().model_copy(update={"completed_at": _at(day)})


def _closed(day):
    return CaseClosed.example().model_copy(update={"closed_at": _at(day)})


def _list(events, as_at, months=6, children=(AMIRA,)):
    return returns.early_help_list([("case-1", events, list(children))], as_at, months)


def test_an_assessment_in_the_look_back_period_is_listed_with_the_templates_values():
    events = [_allocated("2026-01-05"), _assessed("2026-01-20"), _closed("2026-02-27")]
    [row] = _list(events, date(2026, 6, 30), children=(AMIRA,))
    assert row.values() == (
        "c1", None, None, date(2015, 6, 12), 11, date(2026, 1, 5), date(2026, 1, 20), TEAM,
    )  # fmt: skip
    # Six months back from 30 June starts on 31 December: 20 January is inside, not on
    # 1 August, when the case had also closed.
    assert _list(events, date(2026, 8, 1)) == []


def test_an_open_episode_is_listed_without_an_assessment_and_an_unborn_child_is_minus_one():
    rows = _list([_allocated("2026-06-01")], date(2026, 6, 30), children=(AMIRA, UNBORN))
    assert [(r.child_id, r.age, r.assessment_completed) for r in rows] == [
        ("c1", 11, None),
        ("c2", -1, None),
    ]
    assert rows[1].date_of_birth == date(2026, 8, 1)


def test_as_at_a_past_date_the_list_is_what_was_recorded_by_then():
    """The caller passes only the events recorded by the end of the day; a later closure
    does not take the open episode out of an earlier list."""
    events = [_allocated("2025-09-01"), _assessed("2025-09-10")]
    assert len(_list(events, date(2026, 6, 30))) == 1  # open on the day: listed
    assert _list([*events, _closed("2026-01-15")], date(2026, 8, 1)) == []


def test_a_reopened_case_gives_one_row_per_episode():
    events = [
        _allocated("2026-01-05"),
        _assessed("2026-01-20"),
        _closed("2026-02-27"),
        _allocated("2026-05-01"),
    ]
    rows = _list(events, date(2026, 6, 30))
    assert [(r.assessment_started, r.assessment_completed) for r in rows] == [
        (date(2026, 1, 5), date(2026, 1, 20)),
        (date(2026, 5, 1), None),
    ]


def test_the_look_back_starts_the_day_after_the_same_date_months_earlier():
    assert returns.look_back_from(date(2026, 6, 30), 6) == date(2025, 12, 31)
    assert returns.look_back_from(date(2026, 8, 31), 6) == date(2026, 3, 1)
    # The end of the day in England, whatever UTC says.
    assert returns.recorded_by(date(2026, 6, 30)).astimezone(UTC).hour == 22


def test_the_csv_and_the_workbook_carry_the_templates_sheet_and_headings():
    rows = _list([_allocated("2026-01-05"), _assessed("2026-01-20")], date(2026, 6, 30))
    lines = list(csv.reader(io.StringIO(returns.as_csv(rows))))
    assert lines[0] == list(returns.COLUMNS)
    assert lines[1][3:7] == ["12/06/2015", "11", "05/01/2026", "20/01/2026"]

    workbook = load_workbook(io.BytesIO(returns.as_xlsx(rows)))
    assert workbook.sheetnames == ["List 2"]
    sheet = workbook["List 2"]
    assert [cell.value for cell in sheet[1]] == list(returns.COLUMNS)
    assert sheet["F2"].value == datetime(2026, 1, 5)
    assert sheet["F2"].number_format == "dd/mm/yyyy"
