"""Cases through case plan's HTTP API, opened and planned by allocation's events on the broker."""

import io
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, delete, func, select

from caseplan import domain, returns
from caseplan.projections import case_inputs, case_reviews, cases, stored_case
from caseplan.service import definition
from hub.cli import ExportRefused, build_parser, cmd_export_annex_a, fetch_annex_a
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.caseplan import PlanReviewed
from hub.contracts.intake import (
    ConsultationAdvice,
    ConsultationAdvised,
    ConsultationReferred,
    ConsultationRequested,
    EncompassNoticeAcknowledged,
    EncompassNoticeIssued,
    ReferralReceived,
    ReferralTriaged,
)
from hub.contracts.registry import event_model
from hub.http.dependencies import clock
from hub.replay import rebuild_projections
from hub.store import EventStore
from hub.tables import event_store, outbox
from hub.testing import bearer, settings_for

PRACTITIONER, MANAGER = "samira-okafor", "harlesden-team-manager"
HEAD = "early-help-service-manager"
SOCIAL_CARE, SCHOOL = "brent-childrens-social-care", "harlesden-primary-school"
TODAY = datetime.now(UTC).date()
DOMAINS = ("child_development", "parenting_capacity", "family_and_environment")


def _started(service_client, who=PRACTITIONER):
    client = service_client(definition)
    client.headers.update(bearer(client.settings, who))
    return client


def _as(client, who):
    return bearer(client.settings, who)


def _allocate(publish, family=None, case=None, at=None):
    event = CaseAllocated.example().model_copy(
        update={
            "family_id": family or uuid4(),
            "case_id": case or uuid4(),
            "allocated_at": at or datetime.now(UTC),
        }
    )
    publish(event)
    return event


def _panel(publish, allocated, review_date, decided_at=None):
    event = PanelDecisionRecorded.example().model_copy(
        update={
            "family_id": allocated.family_id,
            "case_id": allocated.case_id,
            "decided_at": decided_at or datetime.now(UTC) - timedelta(days=1),
            "review_date": review_date,
        }
    )
    publish(event)
    return event


def _wait(client, case_id, until=lambda view: True, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/cases/{case_id}")
        if response.status_code == 200 and until(response.json()):
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"case {case_id} never reached the expected state")


def _until(check, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError("never happened")


def _assessment(**changes):
    body = {
        "factors": ["3B", "4B"],
        "needs": [
            {"outcome": "good_education", "description": "Attendance 82%."},
            {"outcome": "improved_mental_and_physical_health", "description": "Low mood."},
            {"outcome": "improved_family_relationships", "description": "Conflict at home."},
        ],
        "recommended_level_of_need": "early_help",
        "people": [
            {
                "role": role,
                "name": name,
                "findings": [
                    {"domain": d, "strengths": "Warm", "needs": "Routines"} for d in DOMAINS
                ],
            }
            for role, name in (("child", "Amira Hassan"), ("parent_carer", "Leila Hassan"))
        ],
        "views": {"child": "Wants Mum happier.", "family": "Wants help with routines."},
    }
    return body | changes


def _assessed(client, case_id):
    response = client.post(f"/v1/cases/{case_id}/assessments", json=_assessment(complete=True))
    assert response.status_code == 201, response.text
    return [need["need_id"] for need in response.json()["needs"]]


def _count(database_url, table, **where):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(table)
            for column, value in where.items():
                query = query.where(table.c[column] == value)
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def test_a_case_goes_from_allocation_through_plan_and_reviews_to_closure(service_client, publish):
    caseplan = _started(service_client)
    allocated = _allocate(publish)
    case_id = allocated.case_id
    opened = _wait(caseplan, case_id)
    assert opened["status"] == "open"
    assert opened["lead_professional"]["name"] == "Samira Okafor"

    draft = caseplan.post(f"/v1/cases/{case_id}/assessments", json={"factors": ["3B"], "needs": []})
    assert draft.status_code == 200, draft.text
    assert {m["field"] for m in draft.json()["missing"]} == {
        "needs",
        "recommended_level_of_need",
        "people",
        "views",
    }
    assert caseplan.get(f"/v1/cases/{case_id}/assessments/draft").json()["draft"]["factors"] == [
        "3B"
    ]
    need_ids = _assessed(caseplan, case_id)
    assert caseplan.get(f"/v1/cases/{case_id}/assessments/draft").status_code == 404

    action = caseplan.post(
        f"/v1/cases/{case_id}/actions",
        json={
            "what": "Weekly attendance check-in",
            "who": "School attendance officer",
            "by_when": (TODAY + timedelta(days=14)).isoformat(),
            "need_id": need_ids[0],
        },
    )
    assert action.status_code == 201, action.text
    outcome = caseplan.post(
        f"/v1/cases/{case_id}/outcomes",
        json={"need_id": need_ids[0], "statement": "Amira attends every day."},
    )
    assert outcome.status_code == 201, outcome.text
    assert outcome.json()["event"]["outcome"] == "good_education"

    _panel(publish, allocated, TODAY + timedelta(days=30))
    _wait(caseplan, case_id, lambda view: view["package"])
    for weeks in (4, 8):
        review = caseplan.post(
            f"/v1/cases/{case_id}/reviews",
            json={
                "progress": [
                    {"need_id": need, "rating": "improved", "note": "Better"} for need in need_ids
                ],
                "next_review_date": (TODAY + timedelta(weeks=weeks)).isoformat(),
            },
        )
        assert review.status_code == 201, review.text
    closure = caseplan.post(
        f"/v1/cases/{case_id}/closure",
        json={
            "reason": "needs_met",
            "outcomes": [{"need_id": need, "achieved": True} for need in need_ids],
        },
    )
    assert closure.status_code == 201, closure.text

    view = caseplan.get(f"/v1/cases/{case_id}").json()
    assert view["status"] == "closed"
    assert view["assessment"]["recommended_level_of_need"] == "early_help"
    assert len(view["actions"]) == 1 and len(view["outcomes"]) == 1
    assert [r["on_time"] for r in view["reviews"]] == [True, True]
    assert view["closure"]["reason"] == "needs_met"

    chronology = caseplan.get(f"/v1/families/{allocated.family_id}/chronology").json()
    assert [e["event_type"] for e in chronology["entries"]] == [
        "earlyhelp.case.allocated.v1",
        "earlyhelp.assessment.completed.v1",
        "earlyhelp.plan.action_added.v1",
        "earlyhelp.plan.outcome_agreed.v1",
        "earlyhelp.panel.decision_recorded.v1",
        "earlyhelp.plan.reviewed.v1",
        "earlyhelp.plan.reviewed.v1",
        "earlyhelp.case.closed.v1",
    ]
    assert chronology["entries"][1]["actor"] == PRACTITIONER
    kinds = {(p["kind"], p["party_id"]) for p in chronology["involved"]}
    assert ("lead_professional", str(allocated.lead_professional.worker_id)) in kinds
    assert ("provider", "nw-london-talking-therapies") in kinds
    assert ("team", "harlesden-early-help") in kinds


def test_completion_names_every_missing_field_and_stores_nothing(
    service_client, publish, database_url
):
    caseplan = _started(service_client)
    case_id = _allocate(publish).case_id
    _wait(caseplan, case_id)
    before = _count(database_url, event_store)

    response = caseplan.post(
        f"/v1/cases/{case_id}/assessments",
        json={"complete": True, "people": _assessment()["people"][:1]},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [
        "factors",
        "needs",
        "recommended_level_of_need",
        "people",
        "views",
    ]
    bad = caseplan.post(
        f"/v1/cases/{case_id}/assessments",
        json=_assessment(factors=["21", "3B"], recommended_level_of_need="extreme"),
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"factors", "recommended_level_of_need"}
    assert _count(database_url, event_store) == before
    assert _count(database_url, outbox) == 0


def test_unknown_cases_are_404_and_rule_violations_409(service_client, publish, database_url):
    caseplan = _started(service_client)
    assert caseplan.get(f"/v1/cases/{uuid4()}").status_code == 404
    review = {
        "progress": [{"need_id": str(uuid4()), "rating": "same", "note": "-"}],
        "next_review_date": (TODAY + timedelta(days=30)).isoformat(),
    }
    assert caseplan.post(f"/v1/cases/{uuid4()}/reviews", json=review).status_code == 404

    case_id = _allocate(publish).case_id
    _wait(caseplan, case_id)
    no_plan = caseplan.post(f"/v1/cases/{case_id}/reviews", json=review)
    assert no_plan.status_code == 409
    assert no_plan.json()["type"].endswith("/no-active-plan")
    closed = caseplan.post(
        f"/v1/cases/{case_id}/closure", json={"reason": "disengaged", "outcomes": []}
    )
    assert closed.status_code == 201, closed.text
    step_up = caseplan.post(
        f"/v1/cases/{case_id}/step-up",
        json={
            "reason": "Police notification",
            "factors": ["3A"],
            "social_care_contact": {
                "name": "Chris",
                "team": "Brent MASH",
                "phone": "020 7946 0900",
            },
        },
    )
    assert step_up.status_code == 409
    assert "closed" in step_up.json()["detail"]
    assert _count(database_url, event_store, event_type="earlyhelp.case.stepped_up.v1") == 0


def test_a_repeated_idempotency_key_closes_once(service_client, publish, database_url):
    caseplan = _started(service_client)
    case_id = _allocate(publish).case_id
    _wait(caseplan, case_id)
    body = {"reason": "moved_out_of_area", "outcomes": []}
    headers = {"Idempotency-Key": "close-1"}

    first = caseplan.post(f"/v1/cases/{case_id}/closure", json=body, headers=headers)
    again = caseplan.post(f"/v1/cases/{case_id}/closure", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert _count(database_url, event_store, event_type="earlyhelp.case.closed.v1") == 1


def test_overdue_reviews_show_in_the_list_and_in_the_lead_professionals_own_view(
    service_client, publish
):
    caseplan = _started(service_client)
    overdue = _allocate(publish)
    _panel(publish, overdue, date(2025, 7, 2), decided_at=datetime(2025, 4, 2, tzinfo=UTC))
    in_time = _allocate(publish)
    _panel(publish, in_time, TODAY + timedelta(days=20))
    _wait(caseplan, overdue.case_id, lambda view: view["review_due"])
    _wait(caseplan, in_time.case_id, lambda view: view["review_due"])

    listed = caseplan.get("/v1/cases", params={"review": "overdue"}).json()["items"]
    assert str(overdue.case_id) in {item["case_id"] for item in listed}
    assert str(in_time.case_id) not in {item["case_id"] for item in listed}
    mine = caseplan.get(
        "/v1/cases", params={"review": "overdue", "lead_professional": "me"}
    ).json()["items"]
    assert str(overdue.case_id) in {item["case_id"] for item in mine}
    assert all(item["review_overdue"] for item in mine)
    manager = caseplan.get(
        "/v1/cases",
        params={"lead_professional": "me"},
        headers=_as(caseplan, MANAGER),
    ).json()["items"]
    assert manager == []


def test_step_up_holds_the_case_and_social_care_steps_a_family_down(service_client, publish):
    caseplan = _started(service_client)
    allocated = _allocate(publish)
    _wait(caseplan, allocated.case_id)
    step_up = caseplan.post(
        f"/v1/cases/{allocated.case_id}/step-up",
        json={
            "reason": "Police notification of domestic abuse",
            "factors": ["3A", "3B"],
            "social_care_contact": {
                "name": "Chris",
                "team": "Brent MASH",
                "phone": "020 7946 0900",
            },
        },
    )
    assert step_up.status_code == 201, step_up.text
    assert caseplan.get(f"/v1/cases/{allocated.case_id}").json()["status"] == "stepped_up"

    step_down = {
        "social_care_reference": f"CSC-{uuid4().hex[:8]}",
        "children": [
            {
                "person_id": str(uuid4()),
                "given_name": "Kai",
                "family_name": "Robson",
                "date_of_birth": "2012-09-30",
                "postcode": "NW10 4AB",
            }
        ],
        "reason": "Child in need plan closed",
        "social_care_summary": "Section 17 involvement; risks reduced.",
        "early_help_case_id": str(allocated.case_id),
        "locality": "brent-harlesden",
    }
    social_care = _as(caseplan, SOCIAL_CARE)
    assert caseplan.post("/v1/step-downs", json=step_down).status_code == 403
    response = caseplan.post("/v1/step-downs", json=step_down, headers=social_care)
    assert response.status_code == 201, response.text
    new_case = response.json()["case_id"]
    assert response.json()["event"]["family_id"] == str(allocated.family_id)
    again = caseplan.post("/v1/step-downs", json=step_down, headers=social_care)
    assert again.status_code == 409
    # Awaiting allocation, it has no team or lead yet: the locality's manager sees it.
    waiting = caseplan.get(f"/v1/cases/{new_case}", headers=_as(caseplan, MANAGER))
    assert waiting.json()["status"] == "awaiting_allocation"

    _allocate(publish, family=allocated.family_id, case=UUID(new_case))
    assert _wait(caseplan, new_case, lambda view: view["status"] == "open")["episode"] == 1


def test_a_family_allocated_again_within_twelve_months_of_closure_is_a_re_referral(
    service_client, publish
):
    caseplan = _started(service_client)
    first = _allocate(publish)
    _wait(caseplan, first.case_id)
    closed = caseplan.post(
        f"/v1/cases/{first.case_id}/closure", json={"reason": "disengaged", "outcomes": []}
    )
    assert closed.status_code == 201
    assert caseplan.get(f"/v1/cases/{first.case_id}").json()["re_referral"] is False

    second = _allocate(publish, family=first.family_id)
    assert _wait(caseplan, second.case_id)["re_referral"] is True
    reopened = _allocate(publish, family=first.family_id, case=first.case_id)
    view = _wait(caseplan, reopened.case_id, lambda view: view["status"] == "open")
    assert view["episode"] == 2 and view["re_referral"] is True
    assert view["earlier_episodes"][0]["closure"]["reason"] == "disengaged"


def test_the_performance_report_is_for_managers_in_json_and_csv(service_client, publish):
    caseplan = _started(service_client)
    app = caseplan.app
    allocated = _allocate(publish, at=datetime.now(UTC) - timedelta(days=10))
    _wait(caseplan, allocated.case_id)
    _assessed(caseplan, allocated.case_id)

    assert caseplan.get("/v1/reports/performance").status_code == 403
    manager = _as(caseplan, MANAGER)
    report = caseplan.get(
        "/v1/reports/performance", params={"locality": "brent-harlesden"}, headers=manager
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["cases_opened"] >= 1
    assert body["allocation_to_assessment"]["median_days"] is not None
    csv = caseplan.get("/v1/reports/performance", headers={**manager, "Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "measure,breakdown,value"
    assert any(line.startswith("cases_opened,,") for line in csv.text.splitlines())
    page = caseplan.get("/v1/reports/performance", headers={**manager, "Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 4 and "brent-harlesden" in page.text
    bad = caseplan.get(
        "/v1/reports/performance",
        params={"from": "2025-05-01", "to": "2025-04-01"},
        headers=manager,
    )
    assert bad.status_code == 422
    assert body["encompass"] is None  # a locality's report: notices belong to schools

    # An Operation Encompass notice from intake is counted for its school in the
    # authority-wide report.
    now, notice_id = datetime.now(UTC), uuid4()
    publish(
        EncompassNoticeIssued.example().model_copy(
            update={"notice_id": notice_id, "issued_at": now, "due_by": now + timedelta(hours=12)}
        )
    )
    publish(
        EncompassNoticeAcknowledged.example().model_copy(
            update={"notice_id": notice_id, "acknowledged_at": now + timedelta(hours=1)}
        )
    )
    head = _as(caseplan, HEAD)

    def encompass():
        report = caseplan.get("/v1/reports/performance", headers=head).json()["encompass"]
        return report if report and report["acknowledged_in_time"] else None

    measures = _until(encompass)
    assert measures["by_school"]["harlesden-primary-school"] == {
        "sent": 1,
        "acknowledged_in_time": 1,
        "late": 0,
    }
    app.dependency_overrides.pop(clock, None)


def test_the_case_projection_is_rebuilt_by_replay_equal_to_the_live_one(
    service_client, publish, database_url, kafka_bootstrap, tmp_path
):
    caseplan = _started(service_client)
    allocated = _allocate(publish)
    _wait(caseplan, allocated.case_id)
    need_ids = _assessed(caseplan, allocated.case_id)
    _panel(publish, allocated, TODAY + timedelta(days=30))
    _wait(caseplan, allocated.case_id, lambda view: view["package"])
    caseplan.post(
        f"/v1/cases/{allocated.case_id}/reviews",
        json={
            "progress": [{"need_id": n, "rating": "same", "note": "-"} for n in need_ids],
            "next_review_date": (TODAY + timedelta(days=60)).isoformat(),
        },
    ).raise_for_status()
    before = caseplan.get(f"/v1/cases/{allocated.case_id}").json()
    service_client.stop(caseplan)

    engine = create_engine(database_url)
    with engine.begin() as conn:
        for table in (case_reviews, cases, case_inputs):
            conn.execute(delete(table))
    engine.dispose()
    settings = settings_for("caseplan", database_url, kafka_bootstrap, tmp_path)
    applied = rebuild_projections(definition, settings, ["cases"])

    assert applied["cases"] >= 4
    after = _started(service_client).get(f"/v1/cases/{allocated.case_id}").json()
    assert after == before


def test_the_case_commands_decide_on_is_the_domains_fold_of_its_events(
    service_client, publish, database_url
):
    """One fold: the case the projection keeps, applied one event at a time, is the one
    `domain.replay` makes of the whole history, at the version of the own stream."""
    caseplan = _started(service_client)
    allocated = _allocate(publish)
    case_id = allocated.case_id
    _wait(caseplan, case_id)
    need_ids = _assessed(caseplan, case_id)
    _panel(publish, allocated, TODAY + timedelta(days=30))
    _wait(caseplan, case_id, lambda view: view["package"])
    caseplan.post(
        f"/v1/cases/{case_id}/reviews",
        json={
            "progress": [{"need_id": n, "rating": "same", "note": "-"} for n in need_ids],
            "next_review_date": (TODAY + timedelta(days=60)).isoformat(),
        },
    ).raise_for_status()

    engine = create_engine(database_url)
    with engine.begin() as conn:
        kept = stored_case(conn, case_id)
        history = conn.execute(
            select(case_inputs.c.event_type, case_inputs.c.data_json)
            .where(case_inputs.c.case_id == str(case_id))
            .order_by(case_inputs.c.occurred_at, case_inputs.c.event_id)
        ).all()
        version = EventStore.stream_version(conn, domain.stream_id(case_id))
    engine.dispose()
    replayed = domain.replay(
        event_model(row.event_type).model_validate_json(row.data_json) for row in history
    )
    assert [row.event_type for row in history][-1] == PlanReviewed.event_type
    assert kept == replayed
    assert kept.version == version == 2
    assert kept.plan_active and kept.assessed and len(kept.needs) == len(need_ids)


def test_of_two_concurrent_reviews_of_one_case_one_wins_and_the_other_gets_409(
    service_client, publish
):
    caseplan = _started(service_client)
    allocated = _allocate(publish)
    case_id = allocated.case_id
    _wait(caseplan, case_id)
    need_ids = _assessed(caseplan, case_id)
    _panel(publish, allocated, TODAY + timedelta(days=30))
    _wait(caseplan, case_id, lambda view: view["package"])
    read = caseplan.get(f"/v1/cases/{case_id}")
    etag = read.headers["etag"]
    review = {
        "progress": [{"need_id": n, "rating": "improved", "note": "Better"} for n in need_ids],
        "next_review_date": (TODAY + timedelta(weeks=4)).isoformat(),
    }

    def post(_):
        return caseplan.post(
            f"/v1/cases/{case_id}/reviews", json=review, headers={"If-Match": etag}
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(response.status_code for response in pool.map(post, range(2)))

    assert statuses == [201, 409]
    assert len(caseplan.get(f"/v1/cases/{case_id}").json()["reviews"]) == 1
    assert caseplan.get(f"/v1/cases/{case_id}").headers["etag"] != etag
    stale = post(None)
    assert stale.status_code == 409 and stale.json()["type"].endswith("/case-changed")


def test_staff_see_and_work_the_cases_of_their_localities_and_teams_only(
    service_client, publish, database_url
):
    caseplan = _started(service_client)
    ours = _allocate(publish)  # Harlesden, Samira's team, Samira leads
    theirs = CaseAllocated.example().model_copy(
        update={
            "family_id": uuid4(),
            "case_id": uuid4(),
            "allocated_at": datetime.now(UTC),
            "locality": "brent-wembley",
            "team_id": "wembley-early-help",
            "lead_professional": CaseAllocated.example().lead_professional.model_copy(
                update={
                    "worker_id": uuid4(),
                    "name": "Tomasz Nowak",
                    "email": "tomasz.nowak@brent.example.gov.uk",
                    "staff_client_id": None,
                }
            ),
        }
    )
    publish(theirs)
    _wait(caseplan, ours.case_id)

    for who in (PRACTITIONER, MANAGER):
        headers = _as(caseplan, who)
        assert caseplan.get(f"/v1/cases/{ours.case_id}", headers=headers).status_code == 200
        # Out of scope reads as unknown: 404, not 403 (which told that the case exists).
        assert caseplan.get(f"/v1/cases/{theirs.case_id}", headers=headers).status_code == 404
        listed = caseplan.get("/v1/cases", headers=headers).json()["items"]
        assert str(theirs.case_id) not in {item["case_id"] for item in listed}
        work = caseplan.post(
            f"/v1/cases/{theirs.case_id}/closure",
            json={"reason": "disengaged", "outcomes": []},
            headers=headers,
        )
        assert work.status_code == 404, who
    manager = _as(caseplan, MANAGER)
    report = caseplan.get(
        "/v1/reports/performance", params={"locality": "brent-wembley"}, headers=manager
    )
    assert report.status_code == 403
    own_report = caseplan.get("/v1/reports/performance", headers=_as(caseplan, MANAGER))
    assert own_report.json()["locality"] == "brent-harlesden"
    # Nothing refused changed anything: the Wembley case is still open.
    assert _count(database_url, cases, case_id=str(theirs.case_id), status="closed") == 0
    assert _count(database_url, event_store, event_type="earlyhelp.case.closed.v1") == 0


# --- the 4-week measure from recorded service starts (issue 21) ---------------------------

HEAD = "early-help-service-manager"  # a manager across the authority


def test_the_four_week_measure_counts_to_recorded_service_starts(service_client, publish):
    """Three families assessed on 3 March 2025 in a locality of their own: one service
    started 17 days later, one 42 days later, one family still waiting on 20 April."""
    caseplan = _started(service_client)
    app = caseplan.app
    locality = f"test-locality-{uuid4().hex[:8]}"
    assessed_at = datetime(2025, 3, 3, 10, tzinfo=UTC)
    allocated = []
    for _ in range(3):
        event = CaseAllocated.example().model_copy(
            update={
                "family_id": uuid4(),
                "case_id": uuid4(),
                "allocated_at": assessed_at - timedelta(days=2),
                "locality": locality,
            }
        )
        publish(event, time=event.allocated_at)
        allocated.append(event)
    app.dependency_overrides[clock] = lambda: assessed_at
    for event in allocated:
        _wait(caseplan, event.case_id)
        _assessed(caseplan, event.case_id)
    service = PanelDecisionRecorded.example().package[0]
    start = {"provider_id": service.provider_id, "service": service.service}
    before_panel = caseplan.post(
        f"/v1/cases/{allocated[0].case_id}/service-starts",
        json=start | {"started_on": "2025-03-03"},
    )
    assert before_panel.status_code == 409, before_panel.text
    decided_at = assessed_at + timedelta(days=2)
    for event in allocated:
        panel = PanelDecisionRecorded.example().model_copy(
            update={
                "family_id": event.family_id,
                "case_id": event.case_id,
                "decided_at": decided_at,
            }
        )
        publish(panel, time=decided_at)
    for event in allocated:
        _wait(caseplan, event.case_id, lambda view: view["package"])

    app.dependency_overrides[clock] = lambda: datetime(2025, 4, 20, 12, tzinfo=UTC)
    for event, started_on in zip(allocated, ("2025-03-20", "2025-04-14"), strict=False):
        recorded = caseplan.post(
            f"/v1/cases/{event.case_id}/service-starts", json=start | {"started_on": started_on}
        )
        assert recorded.status_code == 201, recorded.text
        assert recorded.json()["event_type"] == "earlyhelp.case.service_started.v1"
    again = caseplan.post(
        f"/v1/cases/{allocated[0].case_id}/service-starts",
        json=start | {"started_on": "2025-03-21"},
    )
    assert again.status_code == 409
    tomorrow = caseplan.post(
        f"/v1/cases/{allocated[2].case_id}/service-starts",
        json=start | {"started_on": "2025-04-21"},
    )
    assert tomorrow.status_code == 422
    assert [e["field"] for e in tomorrow.json()["errors"]] == ["started_on"]

    view = caseplan.get(f"/v1/cases/{allocated[1].case_id}").json()
    assert [(s["service"], s["started_on"]) for s in view["services_started"]] == [
        (service.service, "2025-04-14")
    ]
    head = _as(caseplan, HEAD)
    period = {"locality": locality, "from": "2025-03-01", "to": "2025-04-30"}
    report = caseplan.get("/v1/reports/performance", params=period, headers=head).json()
    assert report["assessment_to_service_start"] == {
        "cases": 2,
        "median_days": 29.5,
        "p90_days": 39.5,
        "within_four_weeks": 1,
        "within_four_weeks_percent": 50.0,
        "waiting_over_four_weeks_now": 1,
    }
    assert report["allocation_to_assessment"]["p90_days"] == 2.0
    outside = caseplan.get(
        "/v1/reports/performance/outside-four-weeks", params=period, headers=head
    ).json()["items"]
    assert [(item["case_id"], item["service_started_on"], item["days"]) for item in outside] == [
        (str(allocated[2].case_id), None, 48),
        (str(allocated[1].case_id), "2025-04-14", 42),
    ]
    assert caseplan.get("/v1/reports/performance/outside-four-weeks").status_code == 403
    app.dependency_overrides.pop(clock, None)


# --- Ofsted Annex A list 2 (issue 21) ------------------------------------------------------

IG = "information-governance-officer"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_annex_a_list_2_as_at_a_past_date_in_json_csv_and_xlsx(service_client, publish):
    caseplan = _started(service_client)
    app = caseplan.app
    referred_at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    received = ReferralReceived.model_validate(
        ReferralReceived.examples()[0]
        | {"referral_id": str(uuid4()), "family_id": str(uuid4()), "received_at": referred_at}
    )
    allocated = CaseAllocated.example().model_copy(
        update={
            "family_id": received.family_id,
            "case_id": uuid4(),
            "allocated_at": referred_at + timedelta(days=2),
        }
    )
    triaged = ReferralTriaged.example().model_copy(
        update={
            "referral_id": received.referral_id,
            "family_id": received.family_id,
            "case_id": allocated.case_id,
            "decided_at": referred_at + timedelta(days=1),
        }
    )
    publish(received, time=received.received_at)
    publish(triaged, time=triaged.decided_at)
    publish(allocated, time=allocated.allocated_at)
    _wait(caseplan, allocated.case_id)
    app.dependency_overrides[clock] = lambda: datetime(2026, 1, 20, 11, tzinfo=UTC)
    _assessed(caseplan, allocated.case_id)
    app.dependency_overrides.pop(clock, None)

    ig = _as(caseplan, IG)
    path = "/v1/returns/annex-a/early-help"
    amira = str(received.children[0].person_id)

    def rows(as_at):
        listed = caseplan.get(path, params={"as_at": as_at}, headers=ig)
        assert listed.status_code == 200, listed.text
        return [row for row in listed.json()["rows"] if row["Child Unique ID"] == amira]

    [row] = rows("2026-06-30")
    assert list(row) == list(returns.COLUMNS)
    assert row["Assessment start date"] == "2026-01-07"
    assert row["Assessment completion date"] == "2026-01-20"
    assert row["Date of Birth"] == "2015-06-12" and row["Age of Child (Years)"] == 11
    # As at 10 January the assessment had not been completed; on 6 January no one had
    # taken the case yet.
    assert rows("2026-01-10")[0]["Assessment completion date"] is None
    assert rows("2026-01-06") == []

    csv = caseplan.get(path, params={"as_at": "2026-06-30"}, headers={**ig, "Accept": "text/csv"})
    assert csv.text.splitlines()[0] == ",".join(returns.COLUMNS)
    xlsx = caseplan.get(path, params={"as_at": "2026-06-30"}, headers={**ig, "Accept": XLSX})
    assert xlsx.headers["content-type"] == XLSX
    assert load_workbook(io.BytesIO(xlsx.content)).sheetnames == ["List 2"]

    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    future = caseplan.get(path, params={"as_at": tomorrow}, headers=ig)
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "query.as_at"
    ancient = caseplan.get(path, params={"as_at": "0001-01-01"}, headers=ig)
    assert ancient.status_code == 422 and ancient.json()["errors"][0]["code"] == "date_too_early"
    assert caseplan.get(path, params={"as_at": "2026-06-30"}).status_code == 403  # practitioner

    # `earlyhelp export annex-a` asks the API the same, with the token it is given.
    with pytest.raises(ExportRefused, match="403"):
        fetch_annex_a(caseplan, "2026-06-30", 6, "xlsx")
    caseplan.headers.update(ig)
    exported = load_workbook(io.BytesIO(fetch_annex_a(caseplan, "2026-06-30", 6, "xlsx")))
    assert amira in [cell.value for cell in exported["List 2"]["A"]]
    args = build_parser().parse_args(
        ["export", "annex-a", "--as-at", "2026-06-30", "--token-file", "var/demo-ig-token"]
    )
    assert (args.func, args.months, args.format) == (cmd_export_annex_a, 6, "xlsx")


def test_the_front_doors_consultations_are_counted_in_the_report(service_client, publish):
    """Consultations of January 2019 only, so that no other test's count in: two asked, both
    advised (one to refer), one referred."""
    caseplan = _started(service_client)
    day = datetime(2019, 1, 10, 10, tzinfo=UTC)
    for outcome, referred in (
        (ConsultationAdvice.REFER, True),
        (ConsultationAdvice.SIGNPOSTED, False),
    ):
        ids = {"consultation_id": uuid4(), "family_id": uuid4()}
        publish(ConsultationRequested.example().model_copy(update={**ids, "requested_at": day}))
        advised = ConsultationAdvised.example().model_copy(
            update={**ids, "advised_at": day, "outcome": outcome}
        )
        publish(advised)
        if referred:
            publish(ConsultationReferred.example().model_copy(update={**ids, "referred_at": day}))
    head = _as(caseplan, HEAD)
    period = {"from": "2019-01-01", "to": "2019-01-31"}
    expected = {
        "requested": 2,
        "requested_by_organisation_type": {"school": 2},
        "advised_by_outcome": {"refer": 1, "signposted": 1},
        "referred": 1,
    }
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        report = caseplan.get("/v1/reports/performance", params=period, headers=head).json()
        if report["consultations"] == expected:
            break
        time.sleep(0.1)
    assert report["consultations"] == expected
    csv = caseplan.get(
        "/v1/reports/performance", params=period, headers={**head, "Accept": "text/csv"}
    )
    assert "consultations,advised_by_outcome.refer,1" in csv.text.splitlines()


def test_a_family_whose_needs_stayed_met_is_in_the_supporting_families_claim_file(
    service_client, publish
):
    caseplan = _started(service_client)
    app = caseplan.app
    allocated = CaseAllocated.example().model_copy(
        update={
            "family_id": uuid4(),
            "case_id": uuid4(),
            "allocated_at": datetime(2025, 3, 1, 10, tzinfo=UTC),
        }
    )
    publish(allocated, time=allocated.allocated_at)
    _wait(caseplan, allocated.case_id)
    app.dependency_overrides[clock] = lambda: datetime(2025, 3, 3, 10, tzinfo=UTC)
    need_ids = _assessed(caseplan, allocated.case_id)
    decided_at = datetime(2025, 3, 5, 10, tzinfo=UTC)
    panel = PanelDecisionRecorded.example().model_copy(
        update={
            "family_id": allocated.family_id,
            "case_id": allocated.case_id,
            "decided_at": decided_at,
        }
    )
    publish(panel, time=decided_at)
    _wait(caseplan, allocated.case_id, lambda view: view["package"])
    app.dependency_overrides[clock] = lambda: datetime(2025, 6, 30, 10, tzinfo=UTC)
    closed = caseplan.post(
        f"/v1/cases/{allocated.case_id}/closure",
        json={
            "reason": "needs_met",
            "outcomes": [{"need_id": n, "achieved": True} for n in need_ids],
        },
    )
    assert closed.status_code == 201, closed.text
    app.dependency_overrides.pop(clock, None)

    ig = _as(caseplan, IG)
    path = "/v1/returns/supporting-families"
    listed = caseplan.get(path, params={"status": "claimable"}, headers=ig)
    assert listed.status_code == 200, listed.text
    [claim] = [c for c in listed.json()["claims"] if c["family_id"] == str(allocated.family_id)]
    assert (claim["status"], claim["sustained_on"]) == ("claimable", "2025-12-30")
    assert len(claim["headline_needs"]) == 3
    claim_file = caseplan.get(path, headers={**ig, "Accept": "text/csv"}).text.splitlines()
    assert claim_file[0].startswith("family_id,case_id,status,reasons,headline_needs")
    [line] = [row for row in claim_file if row.startswith(str(allocated.family_id))]
    assert ",claimable,," in line and line.endswith(",needs_met,2025-12-30")
    assert caseplan.get(path).status_code == 403  # a practitioner
