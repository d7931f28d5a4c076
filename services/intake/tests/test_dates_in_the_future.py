"""A referral may not put a birth, or consent, after the moment intake reads it.

"Today" is the day in England by the service's clock (the `clock` dependency,
fixed here): at 23:30 UTC on 30 June, in British Summer Time, it is already 1 July.
"""

import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select

from hub.http.dependencies import clock
from hub.tables import event_store
from hub.testing import bearer
from intake.schemas import ReferralSubmission
from intake.service import definition

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
SCHOOL = "harlesden-primary-school"

NOW = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
TODAY_IN_LONDON = date(2026, 7, 1)


@pytest.fixture
def intake(service_client):
    client = service_client(definition)
    client.headers.update(bearer(client.settings, SCHOOL))
    client.app.dependency_overrides[clock] = lambda: NOW
    return client


@pytest.fixture
def events_stored(database_url):
    engine = create_engine(database_url)

    def count():
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(event_store)).scalar_one()

    yield count
    engine.dispose()


def _with(value, *path):
    body = copy.deepcopy(EXAMPLE)
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return body


def _refused_fields(intake, body):
    response = intake.post("/v1/referrals", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "https://earlyhelp.example/problems/validation-error"
    return {error["field"]: error["code"] for error in response.json()["errors"]}


def test_dates_after_today_are_refused_naming_the_field(intake, events_stored):
    a_month_on = (TODAY_IN_LONDON + timedelta(days=31)).isoformat()
    tomorrow = (TODAY_IN_LONDON + timedelta(days=1)).isoformat()
    later_tonight = (NOW + timedelta(hours=1)).isoformat()
    override = {"reason": "Asking would put the child at risk.", "recorded_by": "jo.adeyemi"}
    refused = [
        # The two requests, exactly.
        (
            "children[0].date_of_birth",
            "date_in_future",
            _with("2099-01-01", "children", 0, "date_of_birth"),
        ),
        (
            "children[0].date_of_birth",
            "date_in_future",
            _with(a_month_on, "children", 0, "date_of_birth"),
        ),
        (
            "children[1].date_of_birth",
            "date_in_future",
            _with(tomorrow, "children", 1, "date_of_birth"),
        ),
        (
            "household_members[0].date_of_birth",
            "date_in_future",
            _with(tomorrow, "household_members", 0, "date_of_birth"),
        ),
        ("consent.given_at", "datetime_in_future", _with(later_tonight, "consent", "given_at")),
        (
            "safeguarding_override.recorded_at",
            "datetime_in_future",
            _with({**override, "recorded_at": later_tonight}, "safeguarding_override"),
        ),
    ]
    for field, code, body in refused:
        assert _refused_fields(intake, body) == {field: code}, field

    assert events_stored() == 0


def test_today_in_england_and_a_clock_a_little_behind_the_partners_are_accepted(intake):
    # 1 July in London although the clock's UTC date is still 30 June.
    born_today = _with(TODAY_IN_LONDON.isoformat(), "children", 1, "date_of_birth")
    born_today["consent"]["given_at"] = (NOW + timedelta(minutes=4)).isoformat()

    response = intake.post("/v1/referrals", json=born_today)

    assert response.status_code == 202, response.text


def test_an_unborn_childs_expected_date_may_be_after_today(intake):
    unborn = _with(None, "children", 1, "date_of_birth")
    unborn["children"][1]["expected_date_of_birth"] = "2099-01-01"
    del unborn["children"][1]["nhs_number"]

    response = intake.post("/v1/referrals", json=unborn)

    assert response.status_code == 202, response.text
