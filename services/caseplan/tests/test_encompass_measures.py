"""The performance report's Operation Encompass measures, pure: sent, acknowledged in time,
late and without a school, per school."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from caseplan.queries import as_csv, encompass_measures
from caseplan.schemas import (
    ConsultationCounts,
    PerformanceReport,
    ServiceStartTime,
    StageTime,
)

DUE = datetime(2026, 3, 9, 8, 30, tzinfo=UTC)


def _notice(school, acknowledged_at=None):
    return SimpleNamespace(school_id=school, due_by=DUE, acknowledged_at=acknowledged_at)


NOTICES = [
    _notice("harlesden-primary-school", DUE - timedelta(hours=1)),  # in time
    _notice("harlesden-primary-school", DUE + timedelta(minutes=5)),  # acknowledged late
    _notice("st-marys-primary"),  # not acknowledged
    _notice(None),  # no known school
]


def test_before_the_deadline_an_unacknowledged_notice_is_not_yet_late():
    measures = encompass_measures(NOTICES, now=DUE - timedelta(minutes=1))

    assert (measures.notices_sent, measures.acknowledged_in_time) == (4, 1)
    assert (measures.late, measures.without_school) == (1, 1)
    assert measures.by_school["st-marys-primary"].late == 0


def test_after_the_deadline_every_notice_not_acknowledged_in_time_is_late():
    measures = encompass_measures(NOTICES, now=DUE + timedelta(hours=2))

    assert measures.late == 3  # the school-less notice too: no school heard in time
    harlesden = measures.by_school["harlesden-primary-school"]
    assert (harlesden.sent, harlesden.acknowledged_in_time, harlesden.late) == (2, 1, 1)
    assert measures.by_school["st-marys-primary"].late == 1
    assert None not in measures.by_school


def test_the_csv_names_each_schools_measures():
    none = StageTime(cases=0, median_days=None, p90_days=None)
    no_starts = ServiceStartTime(
        **none.model_dump(),
        within_four_weeks=0,
        within_four_weeks_percent=None,
        waiting_over_four_weeks_now=0,
    )
    report = PerformanceReport(
        locality=None,
        period_from=None,
        period_to=None,
        referrals_by_source={},
        referrals_by_route={},
        referral_to_triage=none,
        triage_to_allocation=none,
        allocation_to_assessment=none,
        assessment_to_service_start=no_starts,
        reviews=0,
        reviews_on_time=0,
        reviews_on_time_percent=None,
        reviews_overdue_now=0,
        step_ups=0,
        step_downs=0,
        closures_by_reason={},
        cases_opened=0,
        re_referrals=0,
        re_referral_percent=None,
        consultations=ConsultationCounts(
            requested=0, requested_by_organisation_type={}, advised_by_outcome={}, referred=0
        ),
        supporting_families_claimable=0,
        encompass=encompass_measures(NOTICES, now=DUE + timedelta(hours=2)),
    )

    lines = as_csv(report).splitlines()

    assert "encompass,notices_sent,4" in lines
    assert "encompass,without_school,1" in lines
    assert "encompass,by_school.harlesden-primary-school.acknowledged_in_time,1" in lines
    assert "referral_to_triage,cases,0" in lines
