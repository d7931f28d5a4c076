"""Intake's part of a subject access request, and how a request for a person resolves them.

The whole answer, gathered from all four services, is proven end to end in
tests/e2e/test_case_lifecycle.py; here intake answers alone.
"""

import copy

import pytest

from hub.broker import free_port
from hub.testing import bearer
from intake.schemas import ReferralSubmission
from intake.service import definition
from intake.settings import IntakeSettings, current_settings
from tests.harness import read_table

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
SCHOOL, IG = "harlesden-primary-school", "information-governance-officer"
FRONT_DOOR = "front-door-demo"


@pytest.fixture
def intake(service_client):
    client = service_client(definition)
    # No other service runs here: each one's address is a port nobody listens on.
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = IntakeSettings(allocation_url=nobody, caseplan_url=nobody, notifications_url=nobody)
    client.app.dependency_overrides[current_settings] = lambda: settings
    return client


def _refer(intake, nhs_numbers):
    body = copy.deepcopy(EXAMPLE)
    for child, nhs_number in zip(body["children"], nhs_numbers, strict=True):
        child["nhs_number"] = nhs_number
    made = intake.post("/v1/referrals", json=body, headers=bearer(intake.settings, SCHOOL))
    assert made.status_code == 202, made.text
    # The partner's 202 names no family (issue 14): the front door's view does.
    seen = intake.get(made.headers["location"], headers=bearer(intake.settings, FRONT_DOOR))
    assert seen.status_code == 200, seen.text
    return {**made.json(), "family_id": seen.json()["family_id"]}


def test_the_family_s_referrals_people_and_events_and_no_other_family_s(intake, database_url):
    mine = _refer(intake, ["9990000018", "9990000026"])
    theirs = _refer(intake, ["9990000034", "9990000042"])
    assert mine["family_id"] != theirs["family_id"]

    answer = intake.get(
        f"/v1/subject-access/families/{mine['family_id']}", headers=bearer(intake.settings, IG)
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    sections = {s["name"]: s["rows"] for s in body["sections"]}
    assert [r["referral_id"] for r in sections["referrals"]] == [mine["referral_id"]]
    assert {r["nhs_number"] for r in sections["people"]} == {"9990000018", "9990000026"}
    (received,) = body["events"]  # the referral as the partner sent it
    assert received["event_type"] == "earlyhelp.referral.received.v1"
    assert received["data"]["children"][0]["given_name"] == EXAMPLE["children"][0]["given_name"]
    assert theirs["referral_id"] not in answer.text and "9990000034" not in answer.text
    # The school's read of its own referral (the 202 is no read; a GET is).
    intake.get(f"/v1/referrals/{mine['referral_id']}", headers=bearer(intake.settings, SCHOOL))
    again = intake.get(
        f"/v1/subject-access/families/{mine['family_id']}", headers=bearer(intake.settings, IG)
    ).json()
    assert (SCHOOL, "read", mine["referral_id"]) in {
        (r["actor"], r["action"], r["resource_id"]) for r in again["access_log"]
    }


def test_a_person_the_hub_does_not_know_is_a_404_on_record(intake, database_url):
    ig = bearer(intake.settings, IG)
    unknown = intake.get("/v1/subject-access/people/6f1d3c1e-0000-4000-8000-000000000001",
                         headers=ig)  # fmt: skip
    assert unknown.status_code == 404, unknown.text
    by_number = intake.post("/v1/subject-access/people-by-nhs-number",
                            json={"nhs_number": "9990000018"}, headers=ig)  # fmt: skip
    assert by_number.status_code == 404
    refused = [
        (row["action"], row["resource_type"], row["resource_id"])
        for row in read_table(database_url, "audit_log", actor=IG)
    ]
    # The NHS number asked for is personal data: the audit names the lookup, not the number.
    assert refused == [
        ("refused", "person", "6f1d3c1e-0000-4000-8000-000000000001"),
        ("refused", "person", "nhs_number"),
    ]


def test_an_nhs_number_that_fails_its_check_digit_is_a_422_naming_it(intake):
    wrong = intake.post("/v1/subject-access/people-by-nhs-number",
                        json={"nhs_number": "9990000019"},
                        headers=bearer(intake.settings, IG))  # fmt: skip
    assert wrong.status_code == 422
    assert [e["field"] for e in wrong.json()["errors"]] == ["nhs_number"]
    assert "9990000019" not in wrong.text


def test_a_service_that_does_not_answer_fails_the_whole_request_naming_it(intake):
    made = _refer(intake, ["9990000018", "9990000026"])
    ig = bearer(intake.settings, IG)
    family = intake.get(f"/v1/subject-access/families/{made['family_id']}", headers=ig).json()
    person_id = family["sections"][1]["rows"][0]["person_id"]

    answer = intake.get(f"/v1/subject-access/people/{person_id}", headers=ig)

    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["service"] in ("allocation", "caseplan", "notifications")
    assert "could not be reached" in answer.json()["detail"]


def test_only_information_governance_may_ask(intake):
    for client_id in (SCHOOL, "front-door-demo", "early-help-service-manager", "hub-operator"):
        headers = bearer(intake.settings, client_id)
        for path in (
            "/v1/subject-access/people/6f1d3c1e-0000-4000-8000-000000000001",
            "/v1/subject-access/families/6f1d3c1e-0000-4000-8000-000000000001",
        ):
            assert intake.get(path, headers=headers).status_code == 403, (client_id, path)
        by_number = intake.post("/v1/subject-access/people-by-nhs-number",
                                json={"nhs_number": "9990000018"}, headers=headers)  # fmt: skip
        assert by_number.status_code == 403, client_id


def test_a_household_member_is_found_by_the_referrals_naming_them(intake, database_url):
    made = _refer(intake, ["9990000018", "9990000026"])
    ig = bearer(intake.settings, IG)
    family = intake.get(f"/v1/subject-access/families/{made['family_id']}", headers=ig).json()
    (received,) = family["events"]
    (member,) = received["data"]["household_members"]

    answer = intake.get(f"/v1/subject-access/people/{member['person_id']}", headers=ig)

    # Found (no other service runs here, so the gathering then fails, naming one).
    assert answer.status_code == 502, answer.text
    assert ("read", "person", member["person_id"]) in {
        (row["action"], row["resource_type"], row["resource_id"])
        for row in read_table(database_url, "audit_log", actor=IG)
    }
