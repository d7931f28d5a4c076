"""Operation Encompass at the front door: police notifications, schools' acknowledgements,
the deadline watch and the front door's queue, on a real database and the real broker.

"Now" is the app's `clock` dependency and the watch's `now` argument, both set here: a
Friday evening in the future, so nothing here waits for or races a real deadline.
"""

import copy
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select

from hub.contracts.registry import event_model
from hub.http.dependencies import clock
from hub.tables import event_store
from hub.testing import bearer
from intake.deadlines import raise_due_alerts
from intake.projections import encompass_notices, referrals
from intake.schemas import PoliceNotificationSubmission
from intake.service import definition
from intake.settings import intake_settings

EXAMPLE = PoliceNotificationSubmission.model_config["json_schema_extra"]["examples"][0]
POLICE, SCHOOL, HEALTH, STAFF = (
    "met-police-brent",
    "harlesden-primary-school",
    "brent-health-visiting",
    "front-door-demo",
)
FRIDAY_EVENING = datetime(2027, 3, 5, 19, 0, tzinfo=UTC)
MONDAY_START = datetime(2027, 3, 8, 8, 30, tzinfo=UTC)


@pytest.fixture
def intake(service_client):
    client = service_client(definition)
    client.app.dependency_overrides[clock] = lambda: FRIDAY_EVENING
    return client


@pytest.fixture
def stored(database_url):
    engine = create_engine(database_url)

    def rows(query):
        with engine.connect() as conn:
            return conn.execute(query).all()

    yield rows
    engine.dispose()


def _as(client, who):
    return bearer(client.settings, who)


def _notify(intake, body=EXAMPLE, who=POLICE):
    return intake.post("/v1/police-notifications", json=body, headers=_as(intake, who))


def _events(stored, event_type):
    rows = stored(
        select(event_store.c.data)
        .where(event_store.c.event_type == event_type)
        .order_by(event_store.c.position)
    )
    return [event_model(event_type).model_validate_json(row.data) for row in rows]


def _queue(intake):
    response = intake.get("/v1/encompass-notices", headers=_as(intake, STAFF))
    assert response.status_code == 200, response.text
    return response.json()["notices"]


def test_two_children_at_two_schools_each_get_a_notice_holding_only_themselves(intake, stored):
    response = _notify(intake)

    assert response.status_code == 202, response.text
    body = response.json()
    # Nothing about the family or the schools found goes back to the force.
    assert set(body) == {"referral_id", "status", "received_at", "notices"}
    assert [n["due_by"] for n in body["notices"]] == ["2027-03-08T08:30:00Z"] * 2
    # Without a request for a referral, the notification is held as a low one on the
    # family's record: it counts towards cumulative concern.
    assert body["status"] == "held_for_information"
    [(grade,)] = stored(select(referrals.c.police_grade))
    assert grade == "low"

    amira, yusuf = _events(stored, "earlyhelp.encompass.notice_issued.v1")
    assert [str(amira.notice_id), str(yusuf.notice_id)] == [n["notice_id"] for n in body["notices"]]
    # Amira's school is named by URN, Yusuf's by DfE establishment number.
    assert (amira.school_id, amira.school_urn) == ("harlesden-primary-school", "101234")
    assert (yusuf.school_id, yusuf.school_urn) == ("st-marys-primary", "101567")
    assert {amira.school_known_from, yusuf.school_known_from} == {"notification"}
    assert amira.child.given_name == "Amira" and amira.child.present
    assert "Yusuf" not in amira.model_dump_json()
    assert "Amira" not in yusuf.model_dump_json()
    assert yusuf.child.voice_of_child is None and not yusuf.child.present
    assert amira.police_reference == "CAD-4471-07MAR25" and amira.police_force == POLICE
    assert _queue(intake) == []


def test_police_asking_for_a_referral_puts_it_in_the_triage_queue_at_its_grade(intake, stored):
    response = _notify(intake, EXAMPLE | {"referral_requested": True})

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "received"
    [(grade,)] = stored(select(referrals.c.police_grade))
    assert grade == "medium"


def test_an_incident_that_is_not_domestic_abuse_is_a_referral_without_notices(intake, stored):
    response = _notify(intake, EXAMPLE | {"domestic_abuse": False})

    assert response.status_code == 202, response.text
    assert response.json()["notices"] == []
    assert stored(select(func.count()).select_from(encompass_notices)) == [(0,)]


def test_only_police_forces_send_notifications(intake, stored):
    for partner in (SCHOOL, HEALTH):
        response = _notify(intake, who=partner)
        assert response.status_code == 403, response.text
    assert stored(select(func.count()).select_from(event_store)) == [(0,)]


def test_a_bad_notification_names_every_field_and_stores_nothing(intake, stored):
    bad = copy.deepcopy(EXAMPLE)
    bad["children"][0]["school_urn"] = "12AB"
    bad["children"][1]["present"] = "perhaps"
    bad["location_type"] = "car park"
    del bad["police_reference"]

    response = _notify(intake, bad)

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {
        "children[0].school_urn",
        "children[1].present",
        "location_type",
        "police_reference",
    }
    assert stored(select(func.count()).select_from(event_store)) == [(0,)]


def test_a_child_with_no_known_school_is_in_the_front_doors_queue_at_once(intake):
    body = copy.deepcopy(EXAMPLE)
    body["children"][1].pop("school_dfe_number")

    notices = _notify(intake, body).json()["notices"]

    [queued] = _queue(intake)
    assert queued["notice_id"] == notices[1]["notice_id"]
    assert queued["alert_reason"] == "no_school" and queued["school_id"] is None
    assert queued["alerted_at"] == "2027-03-05T19:00:00Z"


def test_the_school_acknowledges_its_own_notice_and_no_other(intake, stored):
    amira, yusuf = (n["notice_id"] for n in _notify(intake).json()["notices"])

    def acknowledge(notice_id, who=SCHOOL):
        return intake.post(
            f"/v1/encompass-notices/{notice_id}/acknowledgement", headers=_as(intake, who)
        )

    assert acknowledge(yusuf).status_code == 404  # St Mary's pupil, not Harlesden's
    assert acknowledge(amira, who=POLICE).status_code == 403
    first = acknowledge(amira)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "notice_id": amira,
        "acknowledged_at": "2027-03-05T19:00:00Z",
        "in_time": True,
    }
    intake.app.dependency_overrides[clock] = lambda: MONDAY_START
    assert acknowledge(amira).json() == first.json()  # the first acknowledgement stands
    [recorded] = _events(stored, "earlyhelp.encompass.notice_acknowledged.v1")
    assert recorded.school_id == SCHOOL and recorded.in_time


def test_an_unacknowledged_notice_alerts_the_front_door_an_hour_before_its_deadline(intake, stored):
    amira, yusuf = (n["notice_id"] for n in _notify(intake).json()["notices"])
    intake.post(f"/v1/encompass-notices/{amira}/acknowledgement", headers=_as(intake, SCHOOL))
    runtime, calendar = intake.app.state.runtime, intake_settings().school_calendar()

    assert raise_due_alerts(runtime, calendar, datetime(2027, 3, 8, 7, 29, tzinfo=UTC)) == 0
    assert _queue(intake) == []
    assert raise_due_alerts(runtime, calendar, datetime(2027, 3, 8, 7, 30, tzinfo=UTC)) == 1
    assert raise_due_alerts(runtime, calendar, datetime(2027, 3, 8, 7, 45, tzinfo=UTC)) == 0

    [queued] = _queue(intake)
    assert queued["notice_id"] == yusuf and queued["school_id"] == "st-marys-primary"
    assert queued["alert_reason"] == "unacknowledged"
    [alert] = _events(stored, "earlyhelp.encompass.notice_alerted.v1")
    assert str(alert.notice_id) == yusuf and alert.due_by == MONDAY_START
