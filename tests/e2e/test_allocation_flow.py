"""From a partner's referral to an allocated case and a panel decision, across the four
service processes: intake's events reach allocation through Kafka only, allocation's
`CaseAllocated` reaches intake's feedback to the referrer, and an assessment completed
(published as caseplan would) puts the case before its locality's panel.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from kafka import KafkaProducer

from hub.contracts.caseplan import AssessmentCompleted
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.topics import service_topic
from intake.schemas import TriageDecision
from tests.e2e.support import accepted, ce_id, post_referral, read_topic, referral_body
from tests.harness import Hub, wait_for

pytestmark = pytest.mark.e2e

FRONT_DOOR, MANAGER, CHAIR = "front-door-demo", "harlesden-team-manager", "brent-panel-chair"
SAMIRA = "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65"
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
WAIT_S = 30.0


def _publish_assessment(hub: Hub, case_id: str, family_id: str) -> None:
    """Caseplan's event, published as its relay would (caseplan records no assessments yet)."""
    event = AssessmentCompleted.example().model_copy(
        update={
            "case_id": case_id,
            "family_id": family_id,
            "assessment_id": uuid4(),
            "completed_at": datetime.now(UTC) - timedelta(minutes=5),
        }
    )
    record = to_kafka(
        envelope_for(
            event,
            event_id=str(uuid4()),
            source_service="caseplan",
            time=datetime.now(UTC),
            sequence=None,
        )
    )
    producer = KafkaProducer(bootstrap_servers=hub.bootstrap_servers)
    try:
        producer.send(
            service_topic("caseplan"), key=record.key, value=record.value, headers=record.headers
        ).get(10)
    finally:
        producer.close()


def _queued(client: httpx.Client, hub: Hub, case_id: str) -> dict:
    def find() -> dict | None:
        page = client.get(
            hub.url("allocation") + "/v1/allocations",
            params={"status": "unallocated", "locality": "brent-harlesden", "limit": 200},
            headers=hub.auth(MANAGER),
        )
        assert page.status_code == 200, page.text
        return next((i for i in page.json()["items"] if i["case_id"] == case_id), None)

    return wait_for(
        find, WAIT_S, lambda: f"case {case_id} never queued\n" + hub.logs_tail(["allocation"])
    )


def test_a_referral_is_triaged_allocated_and_decided_by_the_panel(
    hub: Hub, client: httpx.Client
) -> None:
    referral = accepted(post_referral(client, hub, referral_body()), hub)
    triage = client.post(
        f"{hub.url('intake')}/v1/referrals/{referral.referral_id}/triage",
        json=DECISION,
        headers=hub.auth(FRONT_DOOR),
    )
    assert triage.status_code == 200, triage.text
    case_id = triage.json()["triage"]["case_id"]
    family_id = triage.json()["family_id"]

    queued = _queued(client, hub, case_id)
    assert queued["urgency"] == referral_body()["urgency"]

    allocated = client.post(
        f"{hub.url('allocation')}/v1/cases/{case_id}/allocation",
        json={"auto": True},
        headers=hub.auth(MANAGER) | {"Idempotency-Key": f"alloc-{case_id}"},
    )
    assert allocated.status_code == 201, allocated.text + hub.logs_tail(["allocation"])
    lead = allocated.json()["lead_professional"]
    assert allocated.json()["team_id"] == "harlesden-early-help"

    # The referrer hears who the lead professional is: CaseAllocated reached intake.
    def told() -> dict | None:
        view = client.get(hub.url("intake") + referral.location, headers=hub.auth()).json()
        return view if view["status"] == "allocated" else None

    view = wait_for(told, WAIT_S, lambda: "intake never heard\n" + hub.logs_tail(["intake"]))
    assert view["allocation"]["lead_professional"]["name"] == lead["name"]

    panel = client.post(
        f"{hub.url('allocation')}/v1/panels",
        json={
            "locality": "brent-harlesden",
            "name": "Harlesden early intervention coordination group",
            "meets_on": (date.today() + timedelta(days=7)).isoformat(),
            "members": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
        },
        headers=hub.auth(CHAIR),
    )
    assert panel.status_code == 201, panel.text
    panel_id = panel.json()["panel_id"]
    _publish_assessment(hub, case_id, family_id)

    def on_agenda() -> bool:
        agenda = client.get(
            f"{hub.url('allocation')}/v1/panels/{panel_id}", headers=hub.auth(CHAIR)
        ).json()["agenda"]
        return any(item["case_id"] == case_id for item in agenda)

    wait_for(on_agenda, WAIT_S, lambda: "never on the agenda\n" + hub.logs_tail(["allocation"]))
    decided = client.post(
        f"{hub.url('allocation')}/v1/panels/{panel_id}/decisions",
        json={
            "case_id": case_id,
            "package": [
                {
                    "provider_id": "nw-london-talking-therapies",
                    "service_id": "adult-talking-therapies",
                    "start_date": (date.today() + timedelta(days=14)).isoformat(),
                    "intensity": "standard",
                }
            ],
            "lead_professional": {"worker_id": lead["worker_id"]},
            "members_present": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
        },
        headers=hub.auth(CHAIR),
    )
    assert decided.status_code == 201, decided.text

    def published() -> list:
        records = read_topic(hub.bootstrap_servers, service_topic("allocation"))
        return [
            dict(r.headers)["ce_type"].decode()
            for r in records
            if dict(r.headers).get("ce_subject", b"").decode() == case_id and ce_id(r)
        ]

    types = wait_for(
        lambda: (found := published()) and len(found) == 2 and found,
        WAIT_S,
        lambda: f"allocation published {published()}\n" + hub.logs_tail(["allocation"]),
    )
    assert types == ["earlyhelp.case.allocated.v1", "earlyhelp.panel.decision_recorded.v1"]
