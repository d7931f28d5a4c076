"""Consultations, contacts that are not referrals (issue 21): the rules without I/O, then
once through the HTTP API on a real database and broker."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import create_engine, select

from hub.contracts.intake import (
    ConsultationAdvice,
    ConsultationReferred,
    ConsultationRequested,
)
from hub.tables import event_store
from hub.testing import bearer
from intake import consultations
from intake.schemas import ConsultationSubmission, ReferralSubmission
from intake.service import definition

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
SCHOOL, HEALTH, STAFF = "harlesden-primary-school", "brent-health-visiting", "front-door-demo"
REQUESTED = ConsultationRequested.example()
ASKED_BY = REQUESTED.practitioner.organisation_id


def _advised(outcome):
    command = consultations.RecordAdvice(
        REQUESTED.consultation_id, outcome, "Refer, with consent.", STAFF, NOW
    )
    return consultations.advise(consultations.replay([REQUESTED]), command)


def _refer(events, organisation_id=ASKED_BY):
    command = consultations.ReferAsAdvised(REQUESTED.consultation_id, organisation_id, uuid4(), NOW)
    return consultations.refer(consultations.replay(events), command)


def test_advice_is_given_once_and_only_advice_to_refer_becomes_a_referral():
    [advised] = _advised(ConsultationAdvice.REFER)
    with pytest.raises(consultations.ConsultationRuleBroken) as raised:
        consultations.advise(
            consultations.replay([REQUESTED, advised]),
            consultations.RecordAdvice(
                REQUESTED.consultation_id, ConsultationAdvice.SIGNPOSTED, "-", STAFF, NOW
            ),
        )
    assert raised.value.problem_slug == "consultation-advised"

    with pytest.raises(consultations.ConsultationRuleBroken) as raised:
        _refer([REQUESTED])
    assert raised.value.problem_slug == "consultation-not-advised-to-refer"
    [signposted] = _advised(ConsultationAdvice.SIGNPOSTED)
    with pytest.raises(consultations.ConsultationRuleBroken):
        _refer([REQUESTED, signposted])

    [referred] = _refer([REQUESTED, advised])
    assert isinstance(referred, ConsultationReferred)
    with pytest.raises(consultations.ConsultationRuleBroken) as raised:
        _refer([REQUESTED, advised, referred])
    assert raised.value.problem_slug == "consultation-referred"


def test_only_the_organisation_that_asked_may_refer_from_it():
    [advised] = _advised(ConsultationAdvice.REFER)
    with pytest.raises(consultations.ConsultationNotFound):
        _refer([REQUESTED, advised], organisation_id="brent-health-visiting")
    with pytest.raises(consultations.ConsultationNotFound):
        _refer([])


# --- through the API ------------------------------------------------------------------------

ASK = ConsultationSubmission.model_config["json_schema_extra"]["examples"][0]
REFERRAL = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


def test_a_consultation_is_asked_advised_and_referred_keeping_the_link(
    service_client, database_url
):
    intake = service_client(definition)
    school, health, staff = (bearer(intake.settings, who) for who in (SCHOOL, HEALTH, STAFF))

    asked = intake.post("/v1/consultations", json=ASK, headers=school)
    assert asked.status_code == 201, asked.text
    location = asked.headers["location"]
    named = ASK | {"children": [{"given_name": "Amira", "family_name": "Hassan"}]}
    assert intake.post("/v1/consultations", json=named, headers=school).status_code == 201
    bad = intake.post("/v1/consultations", json=ASK | {"factors": []}, headers=school)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "factors"
    assert intake.post("/v1/consultations", json=ASK, headers=staff).status_code == 403

    assert intake.get(location, headers=health).status_code == 404  # another's
    queue = intake.get("/v1/consultations", headers=staff).json()["items"]
    assert asked.json()["consultation_id"] in {item["consultation_id"] for item in queue}
    assert intake.get("/v1/consultations", headers=school).status_code == 403

    too_early = intake.post(f"{location}/referral", json=REFERRAL, headers=school)
    assert too_early.status_code == 409, too_early.text
    assert too_early.json()["type"].endswith("consultation-not-advised-to-refer")
    advice = {"outcome": "refer", "advice": "Refer for an early help assessment."}
    assert intake.post(f"{location}/advice", json=advice, headers=school).status_code == 403
    advised = intake.post(f"{location}/advice", json=advice, headers=staff)
    assert advised.status_code == 201, advised.text
    assert intake.post(f"{location}/advice", json=advice, headers=staff).status_code == 409
    seen = intake.get(location, headers=school).json()
    assert (seen["outcome"], seen["advised_by"]) == ("refer", None)

    referred = intake.post(f"{location}/referral", json=REFERRAL, headers=school)
    assert referred.status_code == 202, referred.text
    referral_id = referred.json()["referral_id"]
    assert intake.get(f"/v1/referrals/{referral_id}", headers=school).status_code == 200
    linked = intake.get(location, headers=school).json()
    assert (linked["status"], linked["referral_id"]) == ("referred", referral_id)
    again = intake.post(f"{location}/referral", json=REFERRAL, headers=school)
    assert again.status_code == 409

    engine = create_engine(database_url)
    with engine.connect() as conn:
        types = conn.execute(select(event_store.c.event_type)).scalars().all()
    engine.dispose()
    assert types.count("earlyhelp.consultation.referred.v1") == 1
    assert types.count("earlyhelp.referral.received.v1") == 1
