"""Operation Encompass, pure: the school calendar's deadlines and the notice's decisions."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from hub.contracts.codes import EncompassAlertReason, IncidentLocation
from hub.contracts.intake import (
    EncompassChild,
    EncompassNoticeAcknowledged,
    EncompassNoticeAlerted,
    EncompassNoticeIssued,
)
from hub.schools import School
from hub.settings import REPO_ROOT
from intake import encompass
from intake.encompass import CalendarError, Closure, NoticeNotFound, SchoolCalendar

CALENDAR = SchoolCalendar(
    authority="brent",
    time_zone="Europe/London",
    school_day_starts_at=time(8, 30),
    closures=(
        Closure(first=date(2026, 2, 16), last=date(2026, 2, 20), name="February half term"),
        Closure(first=date(2026, 5, 4), name="Early May bank holiday"),
    ),
)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_friday_evening_incident_is_due_before_school_starts_on_monday():
    friday_evening = _utc(2026, 3, 6, 19, 0)

    # March is GMT in London: 08:30 local is 08:30 UTC.
    assert CALENDAR.next_school_day_start(friday_evening) == _utc(2026, 3, 9, 8, 30)


def test_a_bank_holiday_monday_moves_the_deadline_to_tuesday_in_summer_time():
    friday_evening = _utc(2026, 5, 1, 20, 15)

    # 08:30 British Summer Time is 07:30 UTC.
    assert CALENDAR.next_school_day_start(friday_evening) == _utc(2026, 5, 5, 7, 30)


def test_half_term_is_skipped_whole():
    assert CALENDAR.next_school_day_start(_utc(2026, 2, 13, 22, 0)) == _utc(2026, 2, 23, 8, 30)


def test_before_the_start_of_a_school_day_it_is_due_that_morning_and_after_it_the_next():
    tuesday = date(2026, 3, 10)
    assert CALENDAR.next_school_day_start(_utc(2026, 3, 10, 6, 0)) == _utc(2026, 3, 10, 8, 30)
    assert CALENDAR.next_school_day_start(_utc(2026, 3, 10, 8, 30)) == _utc(2026, 3, 11, 8, 30)
    assert CALENDAR.is_school_day(tuesday)


def test_the_start_is_the_authoritys_local_time_across_the_clocks_going_forward():
    # Clocks go forward on Sunday 29 March 2026: Friday is GMT, Monday is BST.
    assert CALENDAR.next_school_day_start(_utc(2026, 3, 27, 18, 0)) == _utc(2026, 3, 30, 7, 30)


def test_a_calendar_without_school_days_is_refused_not_looped_over():
    closed = SchoolCalendar(
        authority="nowhere",
        closures=(Closure(first=date(2026, 1, 1), last=date(2030, 1, 1), name="x"),),
    )
    with pytest.raises(CalendarError, match="no school day"):
        closed.next_school_day_start(_utc(2026, 3, 6, 19, 0))


def test_the_shipped_calendar_loads_and_a_broken_one_says_which_file(tmp_path: Path):
    shipped = SchoolCalendar.load(REPO_ROOT / "config" / "school-calendar.yaml")
    assert shipped.alert_lead == timedelta(hours=1)
    broken = tmp_path / "calendar.yaml"
    broken.write_text("authority: brent\ntime_zone: Mars/Olympus\n")
    with pytest.raises(CalendarError, match=r"calendar\.yaml"):
        SchoolCalendar.load(broken)


def _child(name: str) -> EncompassChild:
    return EncompassChild(person_id=uuid4(), given_name=name, family_name="Hassan", present=True)


def _issue(*schools: str | None) -> list:
    command = encompass.IssueNotices(
        referral_id=uuid4(),
        family_id=uuid4(),
        police_force="met-police-brent",
        police_reference="CAD-1",
        incident_at=_utc(2026, 3, 6, 18, 0),
        location_type=IncidentLocation.CHILDS_HOME,
        domestic_abuse=True,
        children=tuple(
            encompass.NoticeChild(
                child=_child(f"Child{i}"),
                school=encompass.SchoolChoice(school, None, "notification" if school else None),
            )
            for i, school in enumerate(schools)
        ),
        issued_at=_utc(2026, 3, 6, 19, 0),
    )
    return encompass.issue(command, CALENDAR)


def test_each_child_gets_a_notice_of_their_own_and_no_school_alerts_at_once():
    (first_id, first), (second_id, second) = _issue("harlesden-primary-school", None)

    assert first_id != second_id
    [issued] = first
    assert isinstance(issued, EncompassNoticeIssued)
    assert issued.child.given_name == "Child0" and issued.due_by == _utc(2026, 3, 9, 8, 30)
    issued_without_school, alert = second
    assert issued_without_school.school_id is None
    assert isinstance(alert, EncompassNoticeAlerted)
    assert alert.reason is EncompassAlertReason.NO_SCHOOL
    assert alert.alerted_at == issued_without_school.issued_at


def _notice(school="harlesden-primary-school"):
    [(notice_id, events)] = _issue(school)
    return notice_id, encompass.replay(events)


def test_only_the_notices_school_acknowledges_it_and_only_once():
    notice_id, notice = _notice()

    with pytest.raises(NoticeNotFound):
        encompass.acknowledge(
            notice,
            encompass.AcknowledgeNotice(
                notice_id, "st-marys-primary", "st-marys-primary", _utc(2026, 3, 9, 7)
            ),
        )
    [ack] = encompass.acknowledge(
        notice,
        encompass.AcknowledgeNotice(
            notice_id, "harlesden-primary-school", "harlesden-primary-school", _utc(2026, 3, 9, 7)
        ),
    )
    assert isinstance(ack, EncompassNoticeAcknowledged) and ack.in_time
    again = encompass.AcknowledgeNotice(
        notice_id, "harlesden-primary-school", "harlesden-primary-school", _utc(2026, 3, 9, 9)
    )
    assert encompass.acknowledge(encompass.apply(notice, ack), again) == []


def test_a_late_acknowledgement_is_recorded_as_late():
    notice_id, notice = _notice()
    [ack] = encompass.acknowledge(
        notice,
        encompass.AcknowledgeNotice(
            notice_id, "harlesden-primary-school", "harlesden-primary-school", _utc(2026, 3, 9, 9)
        ),
    )
    assert not ack.in_time


def test_an_unacknowledged_notice_alerts_once_an_hour_before_its_deadline():
    _, notice = _notice()
    lead = CALENDAR.alert_lead

    assert encompass.alert_if_due(notice, _utc(2026, 3, 9, 7, 29), lead) == []
    [alert] = encompass.alert_if_due(notice, _utc(2026, 3, 9, 7, 30), lead)
    assert alert.reason is EncompassAlertReason.UNACKNOWLEDGED
    assert alert.school_id == "harlesden-primary-school"
    alerted = encompass.apply(notice, alert)
    assert encompass.alert_if_due(alerted, _utc(2026, 3, 9, 8, 0), lead) == []


def test_an_acknowledged_notice_never_alerts():
    notice_id, notice = _notice()
    [ack] = encompass.acknowledge(
        notice,
        encompass.AcknowledgeNotice(
            notice_id, "harlesden-primary-school", "harlesden-primary-school", _utc(2026, 3, 8, 20)
        ),
    )
    acknowledged = encompass.apply(notice, ack)
    assert encompass.alert_if_due(acknowledged, _utc(2026, 3, 9, 8, 0), CALENDAR.alert_lead) == []


def test_the_school_police_name_comes_first_then_the_one_staff_recorded_then_none():
    harlesden = School(
        school_id="harlesden-primary-school",
        urn="101234",
        safeguarding_lead_email="dsl@harlesden-primary.example.org",
    )

    named = encompass.choose_school(harlesden, "101234", "st-marys-primary")
    assert named == encompass.SchoolChoice("harlesden-primary-school", "101234", "notification")
    recorded = encompass.choose_school(None, "999999", "st-marys-primary")
    assert recorded == encompass.SchoolChoice("st-marys-primary", "999999", "hub_record")
    # A URN that is none of the authority's schools: the front door finds it by the URN.
    assert encompass.choose_school(None, "999999", None) == encompass.SchoolChoice(
        None, "999999", None
    )


def test_the_front_door_records_a_telephone_call_for_any_notice_even_one_without_a_school():
    [(notice_id, events)] = _issue(None)
    notice = encompass.replay(events)

    [ack] = encompass.acknowledge(
        notice,
        encompass.AcknowledgeNotice(
            notice_id, None, "front-door-demo", _utc(2026, 3, 9, 8, 0), by_telephone=True
        ),
    )

    assert ack.by_telephone and ack.school_id is None and ack.in_time
    assert (
        encompass.alert_if_due(
            encompass.apply(notice, ack), _utc(2026, 3, 9, 8, 1), CALENDAR.alert_lead
        )
        == []
    )
