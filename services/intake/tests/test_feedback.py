"""Feedback to the referrer: allocation's CaseAllocated, through the real broker, names the
lead professional on the referral that opened the case."""

import time
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, delete, select

from hub.contracts.allocation import CaseAllocated
from hub.contracts.common import Practitioner
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.topics import service_topic
from hub.replay import rebuild_projections
from hub.tables import inbox
from hub.testing import bearer, settings_for
from intake.projections import referrals
from intake.schemas import ReferralSubmission, TriageDecision
from intake.service import definition

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
SCHOOL, STAFF = "harlesden-primary-school", "front-door-demo"


@pytest.fixture
def publish(kafka_bootstrap):
    """Publish an event to its producer's topic, as that service's relay would."""
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)

    def send(event, event_id=None):
        event_id = event_id or str(uuid4())
        record = to_kafka(
            envelope_for(
                event,
                event_id=event_id,
                source_service=event.producer,
                time=datetime.now(UTC),
                sequence=None,
            )
        )
        producer.send(
            service_topic(event.producer),
            key=record.key,
            value=record.value,
            headers=record.headers,
        ).get(60)
        return event_id

    yield send
    producer.close()


def _as(client, who):
    return bearer(client.settings, who)


def _triaged(intake, decision=DECISION):
    """A referral by the school, triaged by the front door: (referral id, family id, case id)."""
    response = intake.post("/v1/referrals", json=EXAMPLE, headers=_as(intake, SCHOOL))
    assert response.status_code == 202, response.text
    referral_id = response.json()["referral_id"]
    staff_view = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, STAFF))
    family_id = staff_view.json()["family_id"]  # the partner is not told it (issue 14)
    triage = intake.post(
        f"/v1/referrals/{referral_id}/triage", json=decision, headers=_as(intake, STAFF)
    )
    assert triage.status_code == 200, triage.text
    return referral_id, UUID(family_id), triage.json()["triage"]["case_id"]


def _allocation(case_id, family_id, **changes):
    return CaseAllocated.example().model_copy(
        update={"case_id": UUID(case_id), "family_id": family_id, **changes}
    )


def _view_when(intake, referral_id, ready, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, SCHOOL)).json()
        if ready(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"referral {referral_id} never reached the expected state: {view}")


def _applied(database_url, event_id, timeout_s=60):
    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(select(inbox).where(inbox.c.event_id == event_id)).first():
                    return
            time.sleep(0.05)
        raise AssertionError(f"intake never applied {event_id}")
    finally:
        engine.dispose()


def test_the_referrer_learns_the_lead_professional_once_the_case_is_allocated(
    service_client, publish
):
    intake = service_client(definition)
    referral_id, family_id, case_id = _triaged(intake)
    allocated = _allocation(case_id, family_id)

    publish(allocated)

    view = _view_when(intake, referral_id, lambda v: v["status"] == "allocated")
    assert view["allocation"] == {
        "allocated_at": "2025-03-05T10:00:00Z",
        "lead_professional": {
            "name": "Samira Okafor",
            "role": "Family support practitioner",
            "team": "Harlesden early help team",
            "email": "samira.okafor@brent.example.gov.uk",
            "phone": "020 7946 0582",
        },
    }
    assert view["triage"]["case_id"] == case_id  # the decision is still shown


def test_a_reallocation_replaces_the_lead_professional(service_client, publish):
    intake = service_client(definition)
    referral_id, family_id, case_id = _triaged(intake)
    publish(_allocation(case_id, family_id))
    _view_when(intake, referral_id, lambda v: v["status"] == "allocated")
    new_lead = Practitioner(
        worker_id=uuid4(),
        name="Tom Baptiste",
        role="Senior family support practitioner",
        team_name="Harlesden early help team",
        phone="020 7946 0599",
    )

    publish(
        _allocation(
            case_id,
            family_id,
            lead_professional=new_lead,
            is_reallocation=True,
            reason="Samira is on long-term leave.",
            allocated_at=datetime(2025, 4, 1, 9, 0, tzinfo=UTC),
        )
    )

    view = _view_when(
        intake,
        referral_id,
        lambda v: v["allocation"]["lead_professional"]["name"] == "Tom Baptiste",
    )
    assert view["allocation"]["lead_professional"]["email"] is None
    assert view["allocation"]["lead_professional"]["phone"] == "020 7946 0599"


def test_an_allocation_of_a_case_no_referral_opened_changes_nothing(
    service_client, publish, database_url
):
    intake = service_client(definition)
    referral_id, family_id, _ = _triaged(intake)

    event_id = publish(_allocation(str(uuid4()), family_id))

    _applied(database_url, event_id)
    view = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, SCHOOL)).json()
    assert view["status"] == "triaged"
    assert view["allocation"] is None


def test_the_read_model_is_rebuilt_from_the_store_and_the_allocation_topic(
    service_client, publish, database_url, kafka_bootstrap, tmp_path
):
    intake = service_client(definition)
    referral_id, family_id, case_id = _triaged(intake)
    publish(_allocation(case_id, family_id))
    before = _view_when(intake, referral_id, lambda v: v["status"] == "allocated")
    service_client.stop(intake)  # rebuilds run with the service stopped

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(delete(referrals))
    engine.dispose()
    settings = settings_for("intake", database_url, kafka_bootstrap, tmp_path)
    applied = rebuild_projections(definition, settings, ["referral_status"])

    assert applied["referral_status"] >= 3  # received, triaged, allocated
    restarted = service_client(definition)
    after = restarted.get(f"/v1/referrals/{referral_id}", headers=_as(restarted, SCHOOL))
    assert after.json() == before
