"""Triage and withdrawal through the API, on SQLite and PostgreSQL with the real broker."""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from uuid import UUID

import pytest
from kafka import TopicPartition
from sqlalchemy import create_engine, select

from hub.contracts.envelope import from_kafka
from hub.contracts.topics import service_topic
from hub.kafka import new_reader
from hub.tables import event_store
from hub.testing import bearer
from intake.schemas import ReferralSubmission, TriageDecision, WithdrawalRequest
from intake.service import definition
from intake.settings import IntakeSettings, current_settings

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
WITHDRAWAL = WithdrawalRequest.model_config["json_schema_extra"]["examples"][0]
SCHOOL, HEALTH, STAFF = "harlesden-primary-school", "brent-health-visiting", "front-door-demo"
TRIAGED = "earlyhelp.referral.triaged.v1"
WITHDRAWN = "earlyhelp.referral.withdrawn.v1"


@pytest.fixture
def intake(service_client):
    return service_client(definition)


@pytest.fixture
def events(database_url):
    """The stored events of one referral: (type, actor) in stream order."""
    engine = create_engine(database_url)

    def of(referral_id):
        with engine.connect() as conn:
            rows = conn.execute(
                select(event_store.c.event_type, event_store.c.actor)
                .where(event_store.c.stream_id == f"referral-{referral_id}")
                .order_by(event_store.c.stream_version)
            ).all()
        return [tuple(row) for row in rows]

    yield of
    engine.dispose()


def _as(client, who, scopes=None):
    return bearer(client.settings, who, scopes)


def _refer(intake, who=SCHOOL):
    response = intake.post("/v1/referrals", json=EXAMPLE, headers=_as(intake, who))
    assert response.status_code == 202, response.text
    return response.json()["referral_id"]


def _triage(intake, referral_id, decision=DECISION, headers=None):
    return intake.post(
        f"/v1/referrals/{referral_id}/triage",
        json=decision,
        headers=_as(intake, STAFF) | (headers or {}),
    )


def _withdraw(intake, referral_id, who=SCHOOL, headers=None):
    return intake.post(
        f"/v1/referrals/{referral_id}/withdrawal",
        json=WITHDRAWAL,
        headers=_as(intake, who) | (headers or {}),
    )


def _view(intake, referral_id, who=SCHOOL):
    response = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, who))
    assert response.status_code == 200, response.text
    return response.json()


def _published(settings, referral_id, event_type, timeout_s=90):
    """The CloudEvent of `event_type` about the referral, once the relay has published it."""
    reader = new_reader(settings)
    topic = service_topic("intake")
    try:
        deadline = time.monotonic() + timeout_s
        while not reader.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"{topic} never appeared"
            time.sleep(0.1)
        reader.assign([TopicPartition(topic, p) for p in reader.partitions_for_topic(topic)])
        reader.seek_to_beginning()
        while time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    envelope = from_kafka(record.key, record.value, list(record.headers))
                    if envelope.subject == referral_id and envelope.type == event_type:
                        return envelope
        raise AssertionError(f"{event_type} for {referral_id} was never published")
    finally:
        reader.close()


# --- triage --------------------------------------------------------------------------


def test_triage_to_early_help_opens_a_case_is_published_and_the_referrer_sees_it(intake, events):
    referral_id = _refer(intake)

    response = _triage(intake, referral_id)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "triaged"
    triage = body["triage"]
    assert triage["level_of_need"] == "early_help"
    assert triage["route"] == "early_help"
    assert triage["locality"] == "brent-harlesden"
    case_id = UUID(triage["case_id"])
    assert response.headers["location"] == f"/v1/referrals/{referral_id}"
    assert events(referral_id) == [
        ("earlyhelp.referral.received.v1", SCHOOL),
        (TRIAGED, STAFF),
    ]

    view = _view(intake, referral_id)
    assert view["status"] == "triaged"
    # The referrer sees the decision, without whether the family had an open case (issue 14).
    assert view["triage"] == {k: v for k, v in triage.items() if k != "joins_open_case"}
    assert view["allocation"] is None and view["withdrawal"] is None

    published = _published(intake.settings, referral_id, TRIAGED).decode_data()
    assert published.case_id == case_id
    assert published.decided_by == STAFF
    assert published.rationale == DECISION["rationale"]


@pytest.mark.parametrize(
    ("route", "level"),
    [("social_care", "specialist"), ("signpost_universal", "universal")],
)
def test_a_decision_that_opens_no_case_has_no_case_id(intake, route, level):
    referral_id = _refer(intake)
    decision = {"level_of_need": level, "route": route, "rationale": "Threshold met for s17."}

    response = _triage(intake, referral_id, decision)

    assert response.status_code == 200, response.text
    assert response.json()["triage"]["case_id"] is None
    assert response.json()["triage"]["locality"] is None
    assert _view(intake, referral_id)["triage"]["route"] == route


def test_a_referral_is_triaged_once(intake, events):
    referral_id = _refer(intake)
    assert _triage(intake, referral_id).status_code == 200

    again = _triage(intake, referral_id, DECISION | {"route": "social_care", "locality": None})

    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"].endswith("/referral-already-triaged")
    assert [t for t, _ in events(referral_id)].count(TRIAGED) == 1
    assert _view(intake, referral_id)["triage"]["route"] == "early_help"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"locality": None}, "locality"),
        ({"route": "social_care"}, "locality"),  # a locality without the early_help route
        ({"locality": "Not A Slug"}, "locality"),
        ({"route": "fast_track"}, "route"),
        ({"level_of_need": "level_4"}, "level_of_need"),
        ({"rationale": "   "}, "rationale"),
        ({"decided_by": "someone-else"}, "decided_by"),  # the decider is the caller
    ],
)
def test_an_invalid_decision_names_the_field_and_stores_nothing(intake, events, change, field):
    referral_id = _refer(intake)

    response = _triage(intake, referral_id, DECISION | change)

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert events(referral_id) == [("earlyhelp.referral.received.v1", SCHOOL)]


def test_levels_the_authoritys_framework_does_not_use_are_refused(intake, events):
    framework = IntakeSettings(levels_of_need=["universal", "early_help", "specialist"])
    intake.app.dependency_overrides[current_settings] = lambda: framework
    referral_id = _refer(intake)

    refused = _triage(intake, referral_id, DECISION | {"level_of_need": "targeted"})

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["field"] == "level_of_need"
    assert error["code"] == "level_of_need_not_in_framework"
    assert "universal, early_help, specialist" in error["message"]
    assert len(events(referral_id)) == 1
    assert _triage(intake, referral_id).status_code == 200  # early_help is on it


def test_an_unknown_referral_cannot_be_triaged(intake):
    response = _triage(intake, "6f1c9a1e-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_repeated_idempotency_key_returns_the_first_decision(intake, events):
    referral_id = _refer(intake)
    key = {"Idempotency-Key": "triage-attempt-1"}

    first = _triage(intake, referral_id, headers=key)
    again = _triage(intake, referral_id, headers=key)
    other_body = _triage(intake, referral_id, DECISION | {"rationale": "Changed."}, headers=key)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()  # the same case id, not a second case
    assert again.headers["idempotent-replayed"] == "true"
    assert other_body.status_code == 422
    assert other_body.json()["type"].endswith("/idempotency-key-reused")
    assert [t for t, _ in events(referral_id)].count(TRIAGED) == 1


def _race(referral_id, attempts):
    """Triage one referral with each (client, decision) at the same moment."""
    with ThreadPoolExecutor(len(attempts)) as pool:
        futures = [pool.submit(_triage, c, referral_id, d) for c, d in attempts]
        return [future.result() for future in futures]


def test_concurrent_triage_of_one_referral_exactly_one_wins(intake, events):
    for _ in range(3):
        referral_id = _refer(intake)
        decisions = [
            DECISION,
            {"level_of_need": "specialist", "route": "social_care", "rationale": "Section 47."},
            {"level_of_need": "universal", "route": "no_further_action", "rationale": "None."},
        ]

        responses = _race(referral_id, [(intake, decision) for decision in decisions])

        assert sorted(r.status_code for r in responses) == [200, 409, 409]
        [winner] = [r.json() for r in responses if r.status_code == 200]
        assert [t for t, _ in events(referral_id)].count(TRIAGED) == 1
        assert _view(intake, referral_id, STAFF)["triage"] == winner["triage"]


def test_concurrent_triage_through_two_processes_exactly_one_wins(service_client, events):
    """Two intake processes on one database: the stream version decides, not the process."""
    first = service_client(definition)
    # The second writes the same database but does not join the consumer group: a
    # member that leaves the embedded broker's group mid-join stalls later tests' joins.
    second = service_client(replace(definition, consumes=()))
    for _ in range(3):
        referral_id = _refer(first)
        social_care = {"level_of_need": "specialist", "route": "social_care", "rationale": "S47."}

        responses = _race(referral_id, [(first, DECISION), (second, social_care)])

        assert sorted(r.status_code for r in responses) == [200, 409]
        loser = next(r for r in responses if r.status_code == 409).json()
        # Which check stops the loser depends on timing: the append's version check
        # (concurrency-conflict) or the replayed state (referral-already-triaged).
        assert loser["type"].rsplit("/", 1)[-1] in {
            "concurrency-conflict",
            "referral-already-triaged",
        }
        assert [t for t, _ in events(referral_id)].count(TRIAGED) == 1


# --- withdrawal ----------------------------------------------------------------------


def test_the_referrer_withdraws_before_triage_and_is_told_so(intake, events):
    referral_id = _refer(intake)

    response = _withdraw(intake, referral_id)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "withdrawn"
    assert body["withdrawal"]["reason"] == WITHDRAWAL["reason"]
    assert events(referral_id)[-1] == (WITHDRAWN, SCHOOL)
    view = _view(intake, referral_id)
    assert view["status"] == "withdrawn"
    assert view["withdrawal"] == body["withdrawal"]
    assert view["triage"] is None
    published = _published(intake.settings, referral_id, WITHDRAWN).decode_data()
    assert published.withdrawn_by == SCHOOL
    assert published.reason == WITHDRAWAL["reason"]


def test_a_withdrawn_referral_cannot_be_triaged_or_withdrawn_again(intake, events):
    referral_id = _refer(intake)
    assert _withdraw(intake, referral_id).status_code == 200

    triage = _triage(intake, referral_id)
    again = _withdraw(intake, referral_id)

    for response in (triage, again):
        assert response.status_code == 409
        assert response.json()["type"].endswith("/referral-withdrawn")
    assert [t for t, _ in events(referral_id)] == ["earlyhelp.referral.received.v1", WITHDRAWN]


def test_a_triaged_referral_cannot_be_withdrawn(intake, events):
    referral_id = _refer(intake)
    assert _triage(intake, referral_id).status_code == 200

    response = _withdraw(intake, referral_id)

    assert response.status_code == 409
    assert response.json()["type"].endswith("/referral-already-triaged")
    assert _view(intake, referral_id)["status"] == "triaged"


def test_another_partner_cannot_withdraw_and_learns_nothing(intake, events):
    referral_id = _refer(intake)
    assert _triage(intake, referral_id).status_code == 200

    # 404 whatever the referral's state: a 409 would tell it the referral exists.
    triaged = _withdraw(intake, referral_id, who=HEALTH)
    missing = _withdraw(intake, "6f1c9a1e-0000-4000-8000-000000000000", who=HEALTH)

    assert triaged.status_code == missing.status_code == 404
    assert triaged.json()["detail"] == f"No referral {referral_id}."
    assert len(events(referral_id)) == 2


def test_a_withdrawal_needs_a_reason(intake, events):
    referral_id = _refer(intake)
    response = intake.post(
        f"/v1/referrals/{referral_id}/withdrawal", json={}, headers=_as(intake, SCHOOL)
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["reason"]
    assert len(events(referral_id)) == 1


def test_a_repeated_withdrawal_key_returns_the_first_response(intake, events):
    referral_id = _refer(intake)
    key = {"Idempotency-Key": "withdraw-hps-0117"}

    first = _withdraw(intake, referral_id, headers=key)
    again = _withdraw(intake, referral_id, headers=key)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert [t for t, _ in events(referral_id)].count(WITHDRAWN) == 1


# --- OpenAPI -------------------------------------------------------------------------


def test_the_openapi_documents_the_new_operations_with_working_examples(intake):
    spec = intake.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, statuses in [
        ("/v1/referrals/{referral_id}/triage", {"401", "403", "404", "409", "422"}),
        ("/v1/referrals/{referral_id}/withdrawal", {"401", "403", "404", "409", "422"}),
    ]:
        operation = spec["paths"][path]["post"]
        assert statuses <= set(operation["responses"])
        assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schemas[ref.rsplit("/", 1)[-1]]["examples"]
    queue = spec["paths"]["/v1/referrals"]["get"]
    assert {"401", "403", "422"} <= set(queue["responses"])
    assert {p["name"] for p in queue["parameters"]} == {"status", "limit", "cursor"}

    referral_id = _refer(intake)
    triage_ref = spec["paths"]["/v1/referrals/{referral_id}/triage"]["post"]["requestBody"]
    example = schemas[
        triage_ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    ]["examples"][0]
    assert _triage(intake, referral_id, example).status_code == 200
