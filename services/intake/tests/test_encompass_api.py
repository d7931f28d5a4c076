"""Operation Encompass at the front door: police notifications, schools' acknowledgements,
the deadline watch and the front door's queue, on a real database and the real broker.

"Now" is the app's `clock` dependency and the watch's `now` argument, both set here: a
Friday evening far in the future, so the deadline watch each app also runs on the real
clock never reaches these deadlines, and nothing waits for or races a real one.
"""

import copy
import time
from datetime import UTC, datetime
from uuid import UUID

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, func, select

from hub.contracts.caseplan import ChildSchoolRecorded
from hub.contracts.registry import event_model
from hub.encompass_links import acknowledgement_link, link_key
from hub.http.dependencies import clock
from hub.tables import event_store
from hub.testing import bearer
from intake.deadlines import raise_due_alerts
from intake.projections import child_schools, encompass_notices, referrals
from intake.schemas import PoliceNotificationSubmission, ReferralSubmission
from intake.service import definition
from intake.settings import intake_settings

EXAMPLE = PoliceNotificationSubmission.model_config["json_schema_extra"]["examples"][0]
REFERRAL = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
POLICE, SCHOOL, HEALTH, STAFF = (
    "met-police-brent",
    "harlesden-primary-school",
    "brent-health-visiting",
    "front-door-demo",
)
FRIDAY_EVENING = datetime(2099, 3, 6, 19, 0, tzinfo=UTC)
MONDAY_START = datetime(2099, 3, 9, 8, 30, tzinfo=UTC)


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


def _acknowledge(intake, notice_id, who=SCHOOL):
    return intake.post(
        f"/v1/encompass-notices/{notice_id}/acknowledgement", headers=_as(intake, who)
    )


def test_each_child_gets_their_own_notice_the_school_acknowledges_it_or_the_front_door_is_alerted(
    intake, stored
):
    response = _notify(intake)

    assert response.status_code == 202, response.text
    body = response.json()
    # Nothing about the family or the schools found goes back to the force.
    assert set(body) == {"referral_id", "status", "received_at", "notices"}
    assert [n["due_by"] for n in body["notices"]] == ["2099-03-09T08:30:00Z"] * 2
    # Without a request for a referral, the notification is held as a low one on the
    # family's record: it counts towards cumulative concern.
    assert body["status"] == "held_for_information"
    assert stored(select(referrals.c.police_grade)) == [("low",)]

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

    # Harlesden acknowledges Amira's notice, and cannot touch St Mary's pupil's.
    assert _acknowledge(intake, yusuf.notice_id).status_code == 404
    assert _acknowledge(intake, amira.notice_id, who=POLICE).status_code == 403
    first = _acknowledge(intake, amira.notice_id)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "notice_id": str(amira.notice_id),
        "acknowledged_at": "2099-03-06T19:00:00Z",
        "in_time": True,
    }
    intake.app.dependency_overrides[clock] = lambda: MONDAY_START
    assert _acknowledge(intake, amira.notice_id).json() == first.json()  # the first stands
    [recorded] = _events(stored, "earlyhelp.encompass.notice_acknowledged.v1")
    assert recorded.school_id == SCHOOL and recorded.in_time

    # Nobody acknowledged Yusuf's: the watch alerts the front door an hour before school.
    runtime, calendar = intake.app.state.runtime, intake_settings().school_calendar()
    assert raise_due_alerts(runtime, calendar, datetime(2099, 3, 9, 7, 29, tzinfo=UTC)) == 0
    assert _queue(intake) == []
    assert raise_due_alerts(runtime, calendar, datetime(2099, 3, 9, 7, 30, tzinfo=UTC)) == 1
    assert raise_due_alerts(runtime, calendar, datetime(2099, 3, 9, 7, 45, tzinfo=UTC)) == 0
    [queued] = _queue(intake)
    assert queued["notice_id"] == str(yusuf.notice_id)
    assert (queued["school_id"], queued["alert_reason"]) == ("st-marys-primary", "unacknowledged")
    [alert] = _events(stored, "earlyhelp.encompass.notice_alerted.v1")
    assert alert.notice_id == yusuf.notice_id and alert.due_by == MONDAY_START

    # The front door telephones St Mary's and records it: the notice leaves the queue.
    intake.app.dependency_overrides[clock] = lambda: datetime(2099, 3, 9, 7, 50, tzinfo=UTC)
    told = _acknowledge(intake, yusuf.notice_id, who=STAFF)
    assert told.status_code == 200, told.text
    assert told.json()["in_time"] is True
    assert _queue(intake) == []
    _, by_telephone = _events(stored, "earlyhelp.encompass.notice_acknowledged.v1")
    assert by_telephone.by_telephone and by_telephone.acknowledged_by == STAFF
    assert by_telephone.school_id == "st-marys-primary"


def test_police_alone_notify_and_what_they_ask_for_decides_the_referral(intake, stored):
    for partner in (SCHOOL, HEALTH):
        assert _notify(intake, who=partner).status_code == 403
    bad = copy.deepcopy(EXAMPLE)
    bad["children"][0]["school_urn"] = "12AB"
    bad["children"][1]["present"] = "perhaps"
    bad["location_type"] = "car park"
    del bad["police_reference"]
    refused = _notify(intake, bad)
    assert refused.status_code == 422
    assert {error["field"] for error in refused.json()["errors"]} == {
        "children[0].school_urn",
        "children[1].present",
        "location_type",
        "police_reference",
    }
    assert stored(select(func.count()).select_from(event_store)) == [(0,)]

    # Asked for a referral, it goes to triage at the police grade.
    requested = _notify(intake, EXAMPLE | {"referral_requested": True})
    assert requested.status_code == 202, requested.text
    assert requested.json()["status"] == "received"
    # An incident that is not domestic abuse is a referral without school notices.
    not_abuse = _notify(intake, EXAMPLE | {"domestic_abuse": False})
    assert not_abuse.status_code == 202, not_abuse.text
    assert not_abuse.json()["notices"] == []
    assert sorted(stored(select(referrals.c.police_grade))) == [("low",), ("medium",)]
    assert stored(select(func.count()).select_from(encompass_notices)) == [(2,)]


def test_a_school_staff_recorded_is_used_and_a_child_without_one_goes_to_the_front_door(
    intake, stored, publish
):
    # Amira is known from a school's referral, and case workers recorded her school.
    referral = intake.post("/v1/referrals", json=REFERRAL, headers=_as(intake, SCHOOL))
    assert referral.status_code == 202, referral.text
    [received] = _events(stored, "earlyhelp.referral.received.v1")
    amira_id = received.children[0].person_id
    publish(
        ChildSchoolRecorded.example().model_copy(
            update={
                "family_id": received.family_id,
                "person_id": amira_id,
                "school_id": "st-marys-primary",
            }
        )
    )
    deadline = time.monotonic() + 90
    while not stored(select(child_schools.c.school_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(select(child_schools.c.school_id)) == [("st-marys-primary",)]

    body = copy.deepcopy(EXAMPLE)
    for child in body["children"]:
        child.pop("school_urn", None)
        child.pop("school_dfe_number", None)
    body["children"][0]["nhs_number"] = "9990000018"
    notices = _notify(intake, body).json()["notices"]

    amira, yusuf = _events(stored, "earlyhelp.encompass.notice_issued.v1")
    assert amira.child.person_id == amira_id
    assert (amira.school_id, amira.school_known_from) == ("st-marys-primary", "hub_record")
    # Nobody knows Yusuf's school: the front door hears at once.
    assert yusuf.school_id is None
    [queued] = _queue(intake)
    assert queued["notice_id"] == notices[1]["notice_id"] == str(yusuf.notice_id)
    assert queued["alert_reason"] == "no_school" and queued["school_id"] is None
    assert queued["alerted_at"] == "2099-03-06T19:00:00Z"
    assert UUID(queued["referral_id"]) == yusuf.referral_id


def test_a_school_acknowledges_by_the_signed_link_its_e_mail_carries(service_client, stored):
    # A configured key, as production has (the embedded default generates one).
    intake = service_client(definition, encompass_link_key=SecretStr("k" * 40))
    intake.app.dependency_overrides[clock] = lambda: FRIDAY_EVENING
    amira_id, _ = (n["notice_id"] for n in _notify(intake).json()["notices"])
    key = link_key(intake.settings)

    def path(notice_id, school, key=key):
        link = acknowledgement_link("http://testserver", key, UUID(notice_id), school)
        return link.removeprefix("http://testserver")

    acknowledged = "earlyhelp.encompass.notice_acknowledged.v1"
    # Opening the link (as a mail scanner would) shows the button and changes nothing.
    page = intake.get(path(amira_id, SCHOOL))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'method="post"' in page.text and "I have read the notice" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert _events(stored, acknowledged) == []
    # A link signed for another school, or with another key, acknowledges nothing.
    for wrong in (path(amira_id, "st-marys-primary"), path(amira_id, SCHOOL, key=b"x" * 40)):
        assert intake.post(wrong).status_code == 404
    assert intake.get(path(amira_id, SCHOOL) + "x").status_code == 404

    pressed = intake.post(path(amira_id, SCHOOL))

    assert pressed.status_code == 200, pressed.text
    assert "the notice is acknowledged" in pressed.text and "after" not in pressed.text
    [recorded] = _events(stored, acknowledged)
    assert (recorded.school_id, recorded.by_telephone) == (SCHOOL, False)
    assert recorded.acknowledged_by.startswith(SCHOOL) and "link" in recorded.acknowledged_by
    assert intake.post(path(amira_id, SCHOOL)).status_code == 200  # the first stands
    assert len(_events(stored, acknowledged)) == 1
