"""The triage queue: order, keyset pagination, decision deadlines and overdue, by status.

"Now" is the app's `clock` dependency, overridden here, so deadlines are tested
without waiting for them.
"""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, select

from hub.http.dependencies import clock
from hub.tables import audit_log
from hub.testing import bearer
from intake.schemas import ReferralSubmission, TriageDecision
from intake.service import definition
from intake.settings import IntakeSettings, current_settings

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
SCHOOL, HEALTH, STAFF = "harlesden-primary-school", "brent-health-visiting", "front-door-demo"


@pytest.fixture
def intake(service_client):
    return service_client(definition)


def _as(client, who):
    return bearer(client.settings, who)


def _refer(intake, urgency, who=SCHOOL):
    # The organisation comes from the token; the example names the school's.
    referrer = {k: v for k, v in EXAMPLE["referrer"].items() if k != "organisation_id"}
    body = EXAMPLE | {"urgency": urgency, "referrer": referrer}
    response = intake.post("/v1/referrals", json=body, headers=_as(intake, who))
    assert response.status_code == 202, response.text
    return response.json()


def _at(intake, now):
    intake.app.dependency_overrides[clock] = lambda: now


def _queue(intake, who=STAFF, **params):
    response = intake.get("/v1/referrals", params=params, headers=_as(intake, who))
    assert response.status_code == 200, response.text
    return response.json()


def _ids(page):
    return [item["referral_id"] for item in page["items"]]


def test_the_queue_is_most_urgent_first_then_oldest_first(intake):
    routine_1 = _refer(intake, "routine")
    urgent_1 = _refer(intake, "urgent")
    immediate = _refer(intake, "immediate")
    routine_2 = _refer(intake, "routine")
    urgent_2 = _refer(intake, "urgent")
    # Both reads below at one instant: each item's age_seconds depends on "now".
    _at(intake, datetime.fromisoformat(urgent_2["received_at"]) + timedelta(minutes=1))

    page = _queue(intake, status="awaiting_triage")

    expected = [immediate, urgent_1, urgent_2, routine_1, routine_2]
    assert _ids(page) == [r["referral_id"] for r in expected]
    assert page["status"] == "awaiting_triage"
    assert page["next_cursor"] is None
    first = page["items"][0]
    assert set(first) == {
        "referral_id",
        "family_id",
        "status",
        "urgency",
        "partner_reference",
        "received_at",
        "age_seconds",
        "decision_deadline",
        "overdue",
        "escalating_concern",
        "unresolved_matches",
    }
    assert first["family_id"] == page["items"][1]["family_id"]  # the same children each time
    assert first["escalating_concern"] is False
    assert first["unresolved_matches"] == 0  # the same children each time: matched for sure
    assert first["status"] == "received"
    assert _queue(intake) == page  # awaiting_triage is the default


def test_deadlines_follow_urgency_and_overdue_follows_the_clock(intake):
    referrals = {u: _refer(intake, u) for u in ("immediate", "urgent", "routine")}
    received = {u: datetime.fromisoformat(r["received_at"]) for u, r in referrals.items()}

    def state_at(now):
        _at(intake, now)
        return {item["urgency"]: item for item in _queue(intake)["items"]}

    items = state_at(received["routine"] + timedelta(hours=3, minutes=59))
    for urgency, hours in (("immediate", 4), ("urgent", 24), ("routine", 72)):
        deadline = datetime.fromisoformat(items[urgency]["decision_deadline"])
        assert deadline == received[urgency] + timedelta(hours=hours)
    assert not any(item["overdue"] for item in items.values())

    later = received["routine"] + timedelta(hours=5)
    items = state_at(later)
    assert {u: i["overdue"] for u, i in items.items()} == {
        "immediate": True,
        "urgent": False,
        "routine": False,
    }
    assert items["urgent"]["age_seconds"] == int((later - received["urgent"]).total_seconds())

    items = state_at(received["immediate"] + timedelta(hours=25))
    assert [u for u, i in items.items() if i["overdue"]] == ["immediate", "urgent"]
    items = state_at(received["immediate"] + timedelta(hours=73))
    assert all(i["overdue"] for i in items.values())


def test_deadlines_are_configurable(intake):
    referral = _refer(intake, "routine")
    received = datetime.fromisoformat(referral["received_at"])
    intake.app.dependency_overrides[current_settings] = lambda: IntakeSettings(
        deadline_routine_hours=2
    )
    _at(intake, received + timedelta(hours=3))

    [item] = _queue(intake)["items"]

    assert datetime.fromisoformat(item["decision_deadline"]) == received + timedelta(hours=2)
    assert item["overdue"] is True


def test_pages_follow_the_cursor_without_repeats_or_gaps_as_new_referrals_arrive(intake):
    referrals = [_refer(intake, u) for u in ("routine", "urgent", "routine", "urgent", "routine")]
    everything = _ids(_queue(intake))

    first = _queue(intake, limit=2)
    # Arrivals between pages sort before the cursor (more urgent) or after it (newer):
    # with keyset pagination neither shifts what the next pages hold.
    _refer(intake, "immediate")
    newest = _refer(intake, "routine")
    second = _queue(intake, limit=2, cursor=first["next_cursor"])
    third = _queue(intake, limit=2, cursor=second["next_cursor"])

    assert len(everything) == len(referrals)
    assert _ids(first) + _ids(second) + _ids(third) == [*everything, newest["referral_id"]]
    assert [len(page["items"]) for page in (first, second, third)] == [2, 2, 2]
    assert third["next_cursor"] is None  # the last page says so


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 201}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"status": "allocated"}, "query.status"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"cursor": "eyJzdGF0dXMiOiAxfQ"}, "query.cursor"),  # {"status": 1}
    ],
)
def test_bad_query_parameters_are_named(intake, params, field):
    response = intake.get("/v1/referrals", params=params, headers=_as(intake, STAFF))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_a_cursor_continues_only_the_status_it_was_made_for(intake):
    for _ in range(2):
        _refer(intake, "routine")
    cursor = _queue(intake, limit=1)["next_cursor"]

    response = intake.get(
        "/v1/referrals",
        params={"status": "triaged", "cursor": cursor},
        headers=_as(intake, STAFF),
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "cursor_mismatch"


def test_triaged_and_withdrawn_referrals_leave_the_queue_for_their_own_lists(intake):
    waiting = _refer(intake, "urgent")["referral_id"]
    decided = _refer(intake, "immediate")
    withdrawn = _refer(intake, "routine")["referral_id"]
    received = datetime.fromisoformat(decided["received_at"])
    _at(intake, received + timedelta(hours=5))  # decided an hour past its 4-hour deadline
    triage = intake.post(
        f"/v1/referrals/{decided['referral_id']}/triage",
        json=DECISION,
        headers=_as(intake, STAFF),
    )
    assert triage.status_code == 200
    withdrawal = intake.post(
        f"/v1/referrals/{withdrawn}/withdrawal",
        json={"reason": "Sent to the wrong authority."},
        headers=_as(intake, SCHOOL),
    )
    assert withdrawal.status_code == 200
    _at(intake, received + timedelta(hours=100))

    assert _ids(_queue(intake, status="awaiting_triage")) == [waiting]
    [late] = _queue(intake, status="triaged")["items"]
    [gone] = _queue(intake, status="withdrawn")["items"]

    assert late["referral_id"] == decided["referral_id"]
    assert late["status"] == "triaged"
    assert late["overdue"] is True  # the decision came after the deadline
    assert gone["referral_id"] == withdrawn
    assert gone["status"] == "withdrawn"
    assert gone["overdue"] is False  # withdrawn within its 72 hours


def test_a_partner_lists_only_its_own_referrals(intake, database_url):
    own = [_refer(intake, "urgent")["referral_id"], _refer(intake, "routine")["referral_id"]]
    other = _refer(intake, "immediate", who=HEALTH)["referral_id"]

    assert _ids(_queue(intake, who=SCHOOL)) == own
    assert _ids(_queue(intake, who=HEALTH)) == [other]
    assert _ids(_queue(intake, who=STAFF)) == [other, *own]
    # A partner's list names no family (issue 14): staff's does.
    assert not any("family_id" in item for item in _queue(intake, who=SCHOOL)["items"])
    assert all(item["family_id"] for item in _queue(intake, who=STAFF)["items"])

    engine = create_engine(database_url)
    with engine.connect() as conn:
        reads = conn.execute(
            select(audit_log.c.actor, audit_log.c.resource_type, audit_log.c.resource_id)
        ).all()
    engine.dispose()
    assert (STAFF, "referral_list", "awaiting_triage") in reads
