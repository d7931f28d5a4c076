"""Intake against a real database (SQLite and PostgreSQL) and the real broker."""

import copy

import pytest
from sqlalchemy import create_engine, func, select

from hub.tables import event_store, outbox
from hub.testing import bearer
from intake.projections import referrals
from intake.schemas import ReferralSubmission
from intake.service import definition

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


SCHOOL, STAFF = "harlesden-primary-school", "front-door-demo"


@pytest.fixture
def intake(service_client):
    client = service_client(definition)
    client.headers.update(bearer(client.settings, SCHOOL))
    return client


@pytest.fixture
def stored(database_url):
    engine = create_engine(database_url)

    def count(table):
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()

    yield count
    engine.dispose()


def test_a_valid_referral_is_accepted_stored_and_queued(intake, stored):
    response = intake.post("/v1/referrals", json=EXAMPLE)

    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/referrals/{body['referral_id']}"
    assert body["status"] == "received"
    assert stored(event_store) == 1
    assert stored(referrals) == 1

    # Partners learn nothing of the family the hub matched the referral to (issue 14);
    # front-door staff do.
    assert "family_id" not in body
    view = intake.get(response.headers["location"])
    assert view.status_code == 200
    assert view.json()["partner_reference"] == EXAMPLE["partner_reference"]
    assert "family_id" not in view.json() and "matching" not in view.json()
    staff = intake.get(response.headers["location"], headers=bearer(intake.settings, STAFF))
    assert staff.json()["family_id"]
    assert staff.json()["matching"]["matched_existing_family"] is False


def test_an_invalid_referral_names_every_bad_field_and_stores_nothing(intake, stored):
    bad = copy.deepcopy(EXAMPLE)
    bad["children"][0]["nhs_number"] = "9434765918"  # wrong check digit
    bad["children"][1]["address"]["postcode"] = "NOT A POSTCODE"
    bad["urgency"] = "whenever"
    del bad["concerns"]

    response = intake.post("/v1/referrals", json=bad)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {
        "children[0].nhs_number",
        "children[1].address.postcode",
        "urgency",
        "concerns",
    }
    assert "9434765918" not in response.text  # a child's identifier is never echoed
    assert stored(event_store) == 0
    assert stored(outbox) == 0
    assert stored(referrals) == 0


def test_a_repeated_idempotency_key_returns_the_first_response_and_changes_nothing(intake, stored):
    headers = {"Idempotency-Key": "hps-2025-0117-attempt"}
    first = intake.post("/v1/referrals", json=EXAMPLE, headers=headers)
    again = intake.post("/v1/referrals", json=EXAMPLE, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert stored(event_store) == 1


def test_the_same_idempotency_key_with_another_body_is_refused(intake, stored):
    headers = {"Idempotency-Key": "reused-key"}
    assert intake.post("/v1/referrals", json=EXAMPLE, headers=headers).status_code == 202
    other = copy.deepcopy(EXAMPLE) | {"urgency": "urgent"}

    response = intake.post("/v1/referrals", json=other, headers=headers)

    assert response.status_code == 422
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert stored(event_store) == 1


def test_an_unknown_referral_is_a_404_problem(intake):
    response = intake.get("/v1/referrals/6f1c9a1e-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_an_oversized_body_is_refused_before_anything_is_read(intake, stored):
    huge = copy.deepcopy(EXAMPLE)
    huge["concerns"]["description"] = "x" * 2_000_000

    response = intake.post("/v1/referrals", json=huge)

    assert response.status_code == 413
    assert stored(event_store) == 0


def test_the_openapi_shows_partners_a_body_that_works(intake):
    spec = intake.get("/openapi.json").json()
    operation = spec["paths"]["/v1/referrals"]["post"]
    schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    example = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]["examples"][0]

    assert intake.post("/v1/referrals", json=example).status_code == 202
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    assert "422" in operation["responses"]


def test_the_partners_trace_continues_into_the_stored_event(intake, database_url):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}

    assert intake.post("/v1/referrals", json=EXAMPLE, headers=headers).status_code == 202

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(event_store.c.traceparent)).scalar_one()
    engine.dispose()
    assert stored.split("-")[1] == trace_id


def test_a_tracestate_too_long_to_keep_is_dropped_not_the_referral(intake, database_url):
    # 30 vendors' entries, each valid, about 1,000 characters together: W3C lets a
    # hop drop what it cannot carry, and the event store keeps at most 512.
    tracestate = ",".join(f"vendor{i:02d}=" + "v" * 24 for i in range(30))
    headers = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": tracestate,
    }

    assert intake.post("/v1/referrals", json=EXAMPLE, headers=headers).status_code == 202

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(event_store.c.traceparent, event_store.c.tracestate)).one()
    engine.dispose()
    assert stored.traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert stored.tracestate is None
