"""Staff limited to localities or teams see and work only within them (issue 13).

The holes found with the demo identities, each kept with its request: a
Harlesden practitioner read a Willesden family's chronology (concern codes,
triage decisions, the lead professional) though the family's case was closed
to her; and a command on a case whose row was missing (a rebuild under way)
passed the check of who may work it.
"""

import time
from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import create_engine, delete, select

from caseplan.projections import cases
from caseplan.service import definition
from hub.contracts.allocation import CaseAllocated
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.tables import audit_log
from hub.testing import bearer

PRACTITIONER, FRONT_DOOR = "samira-okafor", "front-door-demo"


def _wait_for(client, path, who, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(path, headers=bearer(client.settings, who))
        if response.status_code == 200:
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {who}")


def _family_triaged_to(publish, locality):
    family_id = uuid4()
    received = ReferralReceived.example().model_copy(
        update={"family_id": family_id, "referral_id": uuid4()}
    )
    publish(received)
    publish(
        ReferralTriaged.example().model_copy(
            update={
                "family_id": family_id,
                "referral_id": received.referral_id,
                "locality": locality,
                "case_id": uuid4(),
            }
        )
    )
    return family_id


def _willesden_case(publish):
    example = CaseAllocated.example()
    event = example.model_copy(
        update={
            "family_id": uuid4(),
            "case_id": uuid4(),
            "allocated_at": datetime.now(UTC),
            "locality": "brent-willesden",
            "team_id": "willesden-early-help",
            "lead_professional": example.lead_professional.model_copy(
                update={
                    "worker_id": uuid4(),
                    "name": "Ruth Kelly",
                    "email": "ruth.kelly@brent.example.gov.uk",
                    "staff_client_id": None,
                }
            ),
        }
    )
    publish(event)
    return event


def _refused(database_url, actor):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.resource_type, audit_log.c.resource_id).where(
                audit_log.c.actor == actor, audit_log.c.action == "refused"
            )
        ).all()
    engine.dispose()
    return {tuple(row) for row in rows}


def test_a_willesden_familys_chronology_is_not_found_for_a_harlesden_practitioner(
    service_client, publish, database_url
):
    caseplan = service_client(definition)
    willesden = _family_triaged_to(publish, "brent-willesden")
    harlesden = _family_triaged_to(publish, "brent-harlesden")
    _wait_for(caseplan, f"/v1/families/{willesden}/chronology", FRONT_DOOR)
    _wait_for(caseplan, f"/v1/families/{harlesden}/chronology", FRONT_DOOR)
    samira = bearer(caseplan.settings, PRACTITIONER)

    theirs = caseplan.get(f"/v1/families/{willesden}/chronology", headers=samira)
    unknown = caseplan.get(f"/v1/families/{uuid4()}/chronology", headers=samira)
    assert theirs.status_code == 404
    assert theirs.json()["title"] == unknown.json()["title"]
    assert ("family_chronology", str(willesden)) in _refused(database_url, PRACTITIONER)
    assert caseplan.get(f"/v1/families/{harlesden}/chronology", headers=samira).status_code == 200


def test_a_family_is_in_scope_through_its_case(service_client, publish):
    caseplan = service_client(definition)
    case = _willesden_case(publish)
    _wait_for(caseplan, f"/v1/cases/{case.case_id}", "early-help-service-manager")
    samira = bearer(caseplan.settings, PRACTITIONER)
    assert caseplan.get(f"/v1/cases/{case.case_id}", headers=samira).status_code == 404
    assert (
        caseplan.get(f"/v1/families/{case.family_id}/chronology", headers=samira).status_code == 404
    )
    manager = bearer(caseplan.settings, "early-help-service-manager")
    assert (
        caseplan.get(f"/v1/families/{case.family_id}/chronology", headers=manager).status_code
        == 200
    )


def test_a_command_on_a_case_without_its_row_is_refused(service_client, publish, database_url):
    caseplan = service_client(definition)
    case = _willesden_case(publish)
    _wait_for(caseplan, f"/v1/cases/{case.case_id}", "early-help-service-manager")
    engine = create_engine(database_url)
    with engine.begin() as conn:  # as while the cases projection is being rebuilt
        conn.execute(delete(cases).where(cases.c.case_id == str(case.case_id)))
    engine.dispose()

    draft = caseplan.post(
        f"/v1/cases/{case.case_id}/assessments",
        json={"complete": False},
        headers=bearer(caseplan.settings, PRACTITIONER),
    )
    assert draft.status_code == 404, draft.text
    assert ("case", str(case.case_id)) in _refused(database_url, PRACTITIONER)
