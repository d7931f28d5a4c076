"""Staff limited to localities or teams see and act only within them (issue 13).

Each test is a hole found with the demo identities, kept with its exact request:
a Harlesden-only manager (and chair) reaching Willesden's queue, case, caseloads,
registry entries and panels. An out-of-scope record answers 404, as a missing
one, and the refusal is in the audit log.
"""

from datetime import date, timedelta

from sqlalchemy import create_engine, select

from hub.tables import audit_log, event_store

from .conftest import CHAIR, HEAD_OF_SERVICE, MANAGER, PRACTITIONER, as_, wait_until

RUTH = "cf91767d-e4f5-4021-8f43-7808a8a7bd4c"  # a Willesden practitioner
WILLESDEN_WORKER = {
    "worker_id": RUTH,
    "name": "Ruth Kelly",
    "role": "Family support practitioner",
    "team": "willesden-early-help",
    "hours_per_week": 30,
    "caseload_limit": 12,
    "email": "ruth.kelly@brent.example.gov.uk",
}


def _refusals(database_url, actor):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.resource_type, audit_log.c.resource_id).where(
                audit_log.c.actor == actor, audit_log.c.action == "refused"
            )
        ).all()
    engine.dispose()
    return {tuple(row) for row in rows}


def _events_of(database_url, case_id):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(event_store.c.event_type).where(event_store.c.stream_id == f"case-{case_id}")
        ).all()
    engine.dispose()
    return rows


def test_a_harlesden_manager_does_not_list_willesdens_queue(allocation, triaged):
    willesden = triaged(locality="brent-willesden")
    harlesden = triaged(locality="brent-harlesden")

    asked = allocation.get(
        "/v1/allocations?status=unallocated&locality=brent-willesden",
        headers=as_(allocation, MANAGER),
    )
    assert asked.status_code == 200
    assert asked.json()["items"] == []
    own = allocation.get(
        "/v1/allocations", params={"limit": 200}, headers=as_(allocation, MANAGER)
    ).json()["items"]
    assert harlesden in {item["case_id"] for item in own}
    assert willesden not in {item["case_id"] for item in own}
    everyone = allocation.get(
        "/v1/allocations?status=unallocated&locality=brent-willesden",
        headers=as_(allocation, HEAD_OF_SERVICE),
    ).json()["items"]
    assert willesden in {item["case_id"] for item in everyone}


def test_a_willesden_case_reads_and_allocates_as_a_missing_one(allocation, triaged, database_url):
    willesden = triaged(locality="brent-willesden")
    manager = as_(allocation, MANAGER)

    read = allocation.get(f"/v1/cases/{willesden}/allocation", headers=manager)
    missing = allocation.get("/v1/cases/6f1c9a1e-0000-4000-8000-000000000000/allocation",
                             headers=manager)  # fmt: skip
    assert read.status_code == 404
    assert read.json()["title"] == missing.json()["title"]
    auto = allocation.post(f"/v1/cases/{willesden}/allocation", json={"auto": True},
                           headers=manager)  # fmt: skip
    assert auto.status_code == 404, auto.text
    moved = allocation.post(
        f"/v1/cases/{willesden}/reallocation",
        json={"auto": True, "reason": "Leaving"},
        headers=manager,
    )
    assert moved.status_code == 404
    assert _events_of(database_url, willesden) == []
    assert {("case", willesden)} <= _refusals(database_url, MANAGER)

    # The same requests by someone whose scope holds the case succeed.
    head = as_(allocation, HEAD_OF_SERVICE)
    assert allocation.get(f"/v1/cases/{willesden}/allocation", headers=head).status_code == 200
    allocated = allocation.post(f"/v1/cases/{willesden}/allocation", json={"auto": True},
                                headers=head)  # fmt: skip
    assert allocated.status_code == 201, allocated.text


def test_a_manager_names_only_their_own_teams_as_the_target(allocation, triaged):
    harlesden = triaged(locality="brent-harlesden")
    response = allocation.post(
        f"/v1/cases/{harlesden}/allocation",
        json={"team_id": "willesden-early-help", "worker_id": RUTH},
        headers=as_(allocation, MANAGER),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "team_id"


def test_caseloads_and_the_registry_are_limited_to_the_managers_teams(allocation, database_url):
    manager = as_(allocation, MANAGER)
    caseload = allocation.get(f"/v1/workers/{RUTH}/caseload", headers=manager)
    assert caseload.status_code == 404
    moved = allocation.post(
        f"/v1/workers/{RUTH}/caseload/reallocation",
        json={"auto": True, "reason": "Leaving"},
        headers=manager,
    )
    assert moved.status_code == 404
    teams = {
        w["team_id"] for w in allocation.get("/v1/caseloads", headers=manager).json()["workers"]
    }
    assert teams == {"harlesden-early-help", "harlesden-early-years"}  # their locality's

    edit = allocation.put(f"/v1/registry/workers/{RUTH}", json=WILLESDEN_WORKER, headers=manager)
    assert edit.status_code == 404
    assert ("worker", RUTH) in _refusals(database_url, MANAGER)
    head = as_(allocation, HEAD_OF_SERVICE)
    assert allocation.get(f"/v1/workers/{RUTH}/caseload", headers=head).status_code == 200
    edited = allocation.put(f"/v1/registry/workers/{RUTH}", json=WILLESDEN_WORKER, headers=head)
    assert edited.status_code == 200, edited.text


def test_a_harlesden_chair_sees_and_decides_harlesdens_panels_only(allocation, database_url):
    meets_on = (date.today() + timedelta(days=7)).isoformat()
    panel = {
        "locality": "brent-willesden",
        "name": "Willesden EICG",
        "meets_on": meets_on,
        "members": [{"name": "Ade Williams", "agency": "Brent early help"}],
    }
    scheduled = allocation.post("/v1/panels", json=panel, headers=as_(allocation, HEAD_OF_SERVICE))
    assert scheduled.status_code == 201, scheduled.text
    panel_id = scheduled.json()["panel_id"]
    chair = as_(allocation, CHAIR)

    assert allocation.post("/v1/panels", json=panel, headers=chair).status_code == 422
    listed = allocation.get("/v1/panels", headers=chair).json()["panels"]
    assert panel_id not in {p["panel_id"] for p in listed}
    assert allocation.get(f"/v1/panels/{panel_id}", headers=chair).status_code == 404
    decision = allocation.post(
        f"/v1/panels/{panel_id}/decisions",
        json={
            "case_id": "6f1c9a1e-0000-4000-8000-000000000000",
            "package": [
                {
                    "provider_id": "brent-family-wellbeing-centres",
                    "service_id": "triple-p-group",
                    "start_date": meets_on,
                    "intensity": "standard",
                }
            ],
            "lead_professional": {"worker_id": RUTH},
            "members_present": [{"name": "Grace Mensah", "agency": "Brent early help"}],
        },
        headers=chair,
    )
    assert decision.status_code == 404
    assert ("panel", panel_id) in _refusals(database_url, CHAIR)


def test_a_list_read_audits_the_ids_it_returned(allocation, triaged, database_url):
    case_id = triaged(locality="brent-harlesden")
    page = allocation.get(
        "/v1/allocations", params={"limit": 200}, headers=as_(allocation, PRACTITIONER)
    )
    assert case_id in {item["case_id"] for item in page.json()["items"]}
    engine = create_engine(database_url)
    with engine.connect() as conn:
        listed = conn.execute(
            select(audit_log.c.resource_id).where(
                audit_log.c.actor == PRACTITIONER,
                audit_log.c.action == "listed",
                audit_log.c.resource_type == "case",
            )
        ).all()
    engine.dispose()
    assert case_id in {row.resource_id for row in listed}


def test_the_panel_list_says_what_the_panel_says(allocation, triaged, assessed):
    """Issue 23: `GET /v1/panels` showed `"agenda": []` for a panel whose detail listed
    a case as awaiting; both now come from one query."""
    scheduled = allocation.post(
        "/v1/panels",
        json={
            "locality": "brent-harlesden",
            "name": "Harlesden EICG",
            "meets_on": (date.today() + timedelta(days=7)).isoformat(),
            "members": [{"name": "Grace Mensah", "agency": "Brent early help"}],
        },
        headers=as_(allocation, CHAIR),
    )
    panel_id = scheduled.json()["panel_id"]
    case_id = triaged()
    allocated = allocation.post(f"/v1/cases/{case_id}/allocation", json={"auto": True},
                                headers=as_(allocation, MANAGER))  # fmt: skip
    assert allocated.status_code == 201, allocated.text
    assessed(case_id, allocated.json()["family_id"])
    chair = as_(allocation, CHAIR)

    def detail():
        panel = allocation.get(f"/v1/panels/{panel_id}", headers=chair).json()
        return panel if panel["agenda"] else None

    shown = wait_until(detail, message="the case never joined the panel")
    assert shown["agenda"][0]["status"] == "awaiting"
    listed = allocation.get("/v1/panels", headers=chair).json()["panels"]
    assert [p for p in listed if p["panel_id"] == panel_id] == [shown]
