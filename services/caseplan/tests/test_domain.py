"""The case aggregate's rules, without I/O."""

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from caseplan import domain
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.caseplan import (
    AssessmentCompleted,
    CaseClosed,
    CaseSteppedUp,
    FamilyViews,
    NeedProgress,
    PersonAssessment,
    ServiceStarted,
)
from hub.contracts.codes import ClosureReason, ProgressRating

NOW = datetime(2025, 4, 10, 9, 0, tzinfo=UTC)
ALLOCATED = CaseAllocated.example()
PANEL = PanelDecisionRecorded.example()
ASSESSED = AssessmentCompleted.example()
NEEDS = ASSESSED.needs


def _case(*events):
    return domain.replay(events)


def _draft(**changes):
    fields = {
        "factors": ASSESSED.factors,
        "needs": ASSESSED.needs,
        "recommended_level_of_need": ASSESSED.recommended_level_of_need,
        "people": tuple(
            PersonAssessment(
                role=role,
                name=name,
                findings=[
                    {"domain": d, "strengths": "Some", "needs": "Some"}
                    for d in ("child_development", "parenting_capacity", "family_and_environment")
                ],
            )
            for role, name in (("child", "Amira"), ("parent_carer", "Leila"))
        ),
        "views": FamilyViews(child="Wants help", family="Wants routines"),
    }
    return domain.AssessmentDraft(**(fields | changes))


def _complete(case, draft):
    command = domain.CompleteAssessment(ALLOCATED.case_id, uuid4(), draft, "samira-okafor", NOW)
    return domain.complete_assessment(case, command)


def _review(case, next_review_date, progress=None, months=3):
    progress = progress or tuple(
        NeedProgress(need_id=n.need_id, rating=ProgressRating.IMPROVED, note="Better")
        for n in NEEDS
    )
    command = domain.ReviewPlan(
        ALLOCATED.case_id, uuid4(), progress, next_review_date, "samira-okafor", NOW, months
    )
    return domain.review(case, command)


def test_allocation_opens_the_case_and_only_own_events_move_its_version():
    case = _case(ALLOCATED, PANEL)
    assert case.status is domain.CaseStatus.OPEN
    assert case.plan_active and case.version == 0
    assert _case(ALLOCATED, ASSESSED).version == 1


def test_a_complete_assessment_is_completed_with_its_needs():
    [event] = _complete(_case(ALLOCATED), _draft())
    assert isinstance(event, AssessmentCompleted)
    assert event.needs == NEEDS and len(event.people) == 2


def test_completing_an_incomplete_assessment_names_every_missing_part():
    draft = domain.AssessmentDraft(
        people=(
            _draft().people[0].model_copy(update={"findings": (_draft().people[0].findings[0],)}),
        )
    )
    with pytest.raises(domain.InvalidCommand) as raised:
        _complete(_case(ALLOCATED), draft)
    fields = [error.field for error in raised.value.errors]
    assert fields == [
        "factors",
        "needs",
        "recommended_level_of_need",
        "people",
        "people[0].findings",
        "people[0].findings",
        "views",
    ]


def test_an_assessment_is_completed_once_per_episode():
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _complete(_case(ALLOCATED, ASSESSED), _draft())
    assert raised.value.code == "assessment-already-completed"


def test_a_review_needs_an_active_plan():
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _review(_case(ALLOCATED, ASSESSED), NOW.date() + timedelta(days=30))
    assert raised.value.code == "no-active-plan"


def test_the_next_review_is_never_beyond_the_configured_maximum():
    case = _case(ALLOCATED, ASSESSED, PANEL)
    [event] = _review(case, date(2025, 7, 10))
    assert event.next_review_date == date(2025, 7, 10)
    with pytest.raises(domain.InvalidCommand) as raised:
        _review(case, date(2025, 7, 11))
    assert raised.value.errors[0].code == "beyond_max_interval"
    assert _review(case, date(2025, 5, 10), months=1)
    with pytest.raises(domain.InvalidCommand):
        _review(case, date(2025, 5, 11), months=1)


def test_a_review_gives_progress_on_every_need_and_no_other():
    case = _case(ALLOCATED, ASSESSED, PANEL)
    stranger = uuid4()
    progress = (NeedProgress(need_id=stranger, rating=ProgressRating.SAME, note="?"),)
    with pytest.raises(domain.InvalidCommand) as raised:
        _review(case, date(2025, 6, 1), progress)
    fields = [error.field for error in raised.value.errors]
    assert fields == ["progress[0].need_id", "progress", "progress", "progress"]


def test_a_stepped_up_case_can_only_be_closed():
    stepped_up = CaseSteppedUp.example().model_copy(
        update={"case_id": ALLOCATED.case_id, "family_id": ALLOCATED.family_id}
    )
    case = _case(ALLOCATED, ASSESSED, PANEL, stepped_up)
    assert case.status is domain.CaseStatus.STEPPED_UP
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _review(case, date(2025, 6, 1))
    assert raised.value.code == "case-stepped-up"
    command = domain.CloseCase(
        ALLOCATED.case_id,
        ClosureReason.STEPPED_UP,
        None,
        tuple((n.need_id, False) for n in NEEDS),
        "samira-okafor",
        NOW,
    )
    [closed] = domain.close(case, command)
    assert closed.reason is ClosureReason.STEPPED_UP


def test_closure_needs_an_outcome_on_every_need_and_needs_met_an_assessment():
    command = domain.CloseCase(
        ALLOCATED.case_id, ClosureReason.NEEDS_MET, None, (), "samira-okafor", NOW
    )
    with pytest.raises(domain.InvalidCommand) as raised:
        domain.close(_case(ALLOCATED), command)
    assert [e.field for e in raised.value.errors] == ["reason"]
    with pytest.raises(domain.InvalidCommand) as raised:
        domain.close(_case(ALLOCATED, ASSESSED), command)
    assert [e.field for e in raised.value.errors] == ["outcomes"] * 3


def test_a_closed_case_refuses_work_and_a_new_allocation_reopens_it_afresh():
    closed = CaseClosed.example()
    case = _case(ALLOCATED, ASSESSED, PANEL, closed)
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _review(case, date(2025, 6, 1))
    assert raised.value.code == "case-closed"
    reopened = _case(ALLOCATED, ASSESSED, PANEL, closed, ALLOCATED)
    assert reopened.status is domain.CaseStatus.OPEN
    assert not reopened.assessed and not reopened.plan_active
    assert reopened.version == 2


def test_unknown_cases_are_not_found():
    with pytest.raises(domain.CaseNotFound):
        _complete(None, _draft())


def test_adding_months_keeps_to_the_end_of_short_months():
    assert domain.add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)
    assert domain.add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert domain.add_months(date(2025, 1, 15), 12) == date(2026, 1, 15)


# 23:30 UTC on 30 June is 00:30 on 1 July in London: "today" is the authority's day.
LATE_EVENING_UTC = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)


def test_an_action_due_yesterday_in_england_is_refused_though_utc_is_still_there():
    case = _case(ALLOCATED, ASSESSED)

    def action_by(by_when):
        command = domain.AddAction(
            ALLOCATED.case_id, uuid4(), None, "Book a session", "Samira", by_when,
            "samira-okafor", LATE_EVENING_UTC,
        )  # fmt: skip
        return domain.add_action(case, command)

    with pytest.raises(domain.InvalidCommand) as raised:
        action_by(date(2026, 6, 30))
    assert [(error.field, error.code) for error in raised.value.errors] == [("by_when", "in_past")]
    assert action_by(date(2026, 7, 1))


def test_the_next_review_must_be_after_today_in_england():
    case = _case(ALLOCATED, ASSESSED, PANEL)
    progress = tuple(
        NeedProgress(need_id=n.need_id, rating=ProgressRating.IMPROVED, note="Better")
        for n in NEEDS
    )

    def review_on(next_review_date):
        command = domain.ReviewPlan(
            ALLOCATED.case_id, uuid4(), progress, next_review_date, "samira-okafor",
            LATE_EVENING_UTC, 3,
        )  # fmt: skip
        return domain.review(case, command)

    with pytest.raises(domain.InvalidCommand) as raised:
        review_on(date(2026, 7, 1))
    assert raised.value.errors[0].code == "not_after_today"
    assert review_on(date(2026, 7, 2))


# --- service starts (issue 21) ----------------------------------------------------------

TRIPLE_P = PANEL.package[0]


def _start(case, service=TRIPLE_P.service, started_on=date(2025, 4, 14), at=NOW + timedelta(7)):
    command = domain.RecordServiceStart(
        ALLOCATED.case_id, TRIPLE_P.provider_id, service, started_on, "samira-okafor", at
    )
    return domain.record_service_start(case, command)


def test_a_service_of_the_agreed_package_starts_once_per_episode():
    before_panel = _case(ALLOCATED, ASSESSED)
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _start(before_panel)
    assert raised.value.code == "no-package"

    [started] = _start(_case(ALLOCATED, ASSESSED, PANEL))
    assert isinstance(started, ServiceStarted) and started.started_on == date(2025, 4, 14)
    with pytest.raises(domain.CaseRuleBroken) as raised:
        _start(_case(ALLOCATED, ASSESSED, PANEL, started))
    assert raised.value.code == "service-already-started"

    closed = CaseClosed.example().model_copy(update={"closed_at": NOW + timedelta(60)})
    reopened = _case(ALLOCATED, ASSESSED, PANEL, started, closed, ALLOCATED)
    assert reopened.package == () and reopened.services_started == ()


def test_a_start_names_a_service_of_the_package_and_no_day_after_today():
    case = _case(ALLOCATED, ASSESSED, PANEL)
    with pytest.raises(domain.InvalidCommand) as raised:
        _start(case, service="Something the panel never agreed")
    assert [(e.field, e.code) for e in raised.value.errors] == [("service", "not_in_package")]
    with pytest.raises(domain.InvalidCommand) as raised:
        _start(case, started_on=date(2025, 4, 18), at=NOW + timedelta(7))
    assert [(e.field, e.code) for e in raised.value.errors] == [("started_on", "future")]
