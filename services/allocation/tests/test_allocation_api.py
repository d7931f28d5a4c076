"""The queue, allocating, capacity, reallocation and the panel, on SQLite and PostgreSQL
with the real broker: intake's and caseplan's events arrive through Kafka."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select

from hub.tables import audit_log, event_store

from .conftest import (
    CHAIR,
    MANAGER,
    PRACTITIONER,
    SAMIRA,
    TOMASZ,
    as_,
    case_in_queue,
    wait_until,
)

ALLOCATED = "earlyhelp.case.allocated.v1"
DECIDED = "earlyhelp.panel.decision_recorded.v1"


@pytest.fixture
def stored(database_url):
    """(event type, actor) of every event stored for a case, in order."""
    engine = create_engine(database_url)

    def of(case_id):
        with engine.connect() as conn:
            rows = conn.execute(
                select(event_store.c.event_type, event_store.c.actor)
                .where(event_store.c.stream_id == f"case-{case_id}")
                .order_by(event_store.c.stream_version)
            ).all()
        return [tuple(row) for row in rows]

    yield of
    engine.dispose()


def _allocate(client, case_id, body=None, who=MANAGER, scopes=None):
    return client.post(
        f"/v1/cases/{case_id}/allocation",
        json=body or {"team_id": "harlesden-early-help", "worker_id": SAMIRA},
        headers=as_(client, who, scopes),
    )


def test_the_queue_shows_the_most_urgent_then_the_longest_waiting_a_page_at_a_time(
    allocation, triaged
):
    now = datetime.now(UTC)
    old = triaged(decided_at=now - timedelta(days=3))
    urgent = triaged(urgency="immediate", decided_at=now - timedelta(hours=1))
    new = triaged(decided_at=now - timedelta(days=1))

    seen, cursor = [], None
    while True:
        params = {"status": "unallocated", "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = allocation.get(
            "/v1/allocations", params=params, headers=as_(allocation, PRACTITIONER)
        )
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ours = [item for item in seen if item["case_id"] in {old, urgent, new}]
    assert [item["case_id"] for item in ours] == [urgent, old, new]
    assert ours[1]["waiting_seconds"] >= 3 * 86400
    assert ours[0]["locality"] == "brent-harlesden" and ours[0]["urgency"] == "immediate"

    bad = allocation.get(
        "/v1/allocations", params={"cursor": "nonsense"}, headers=as_(allocation, MANAGER)
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


def test_allocating_emits_case_allocated_once_and_the_case_leaves_the_queue(
    allocation, triaged, stored, database_url
):
    case_id = triaged()
    response = _allocate(allocation, case_id)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["lead_professional"]["name"] == "Samira Okafor"
    assert body["team_id"] == "harlesden-early-help" and body["is_reallocation"] is False
    assert stored(case_id) == [(ALLOCATED, MANAGER)]
    item = case_in_queue(allocation, case_id, "allocated")
    assert item["worker_id"] == SAMIRA

    again = _allocate(allocation, case_id, {"team_id": "harlesden-early-help", "worker_id": TOMASZ})
    assert again.status_code == 409
    assert stored(case_id) == [(ALLOCATED, MANAGER)]

    view = allocation.get(f"/v1/cases/{case_id}/allocation", headers=as_(allocation, PRACTITIONER))
    assert view.status_code == 200 and view.json()["allocation"]["status"] == "allocated"
    engine = create_engine(database_url)
    with engine.connect() as conn:
        reads = conn.execute(
            select(audit_log.c.actor).where(
                audit_log.c.action == "read",
                audit_log.c.resource_type == "case",
                audit_log.c.resource_id == case_id,
            )
        ).all()
    engine.dispose()
    assert [row.actor for row in reads] == [PRACTITIONER]


def test_auto_allocation_matches_ages_and_spare_capacity(allocation, triaged):
    school_age = triaged()
    babies = triaged(born=[date.today() - timedelta(days=400)], factors=["16A"])

    first = _allocate(allocation, school_age, {"auto": True})
    second = _allocate(allocation, babies, {"auto": True})

    assert first.status_code == 201, first.text
    assert first.json()["lead_professional"]["worker_id"] == SAMIRA
    assert second.json()["team_id"] == "harlesden-early-years"


def test_bad_input_names_the_field_and_stores_nothing(allocation, triaged, stored):
    case_id = triaged()
    unknown_case = _allocate(allocation, "6f1c9a1e-0000-4000-8000-000000000000")
    unknown_worker = _allocate(
        allocation,
        case_id,
        {"team_id": "harlesden-early-help", "worker_id": "6f1c9a1e-0000-4000-8000-000000000000"},
    )
    both = _allocate(allocation, case_id, {"auto": True, "team_id": "harlesden-early-help"})

    assert unknown_case.status_code == 404
    assert unknown_worker.status_code == 422
    assert unknown_worker.json()["errors"][0]["field"] == "worker_id"
    assert both.status_code == 422
    assert stored(case_id) == []


def test_over_capacity_needs_a_managers_override_with_a_reason(allocation, triaged, stored):
    limited = {
        "worker_id": TOMASZ,
        "name": "Tomasz Nowak",
        "role": "Youth and family worker",
        "team": "harlesden-early-help",
        "hours_per_week": 7.5,
        "caseload_limit": 1,
        "email": "tomasz.nowak@brent.example.gov.uk",
    }
    change = allocation.put(
        f"/v1/registry/workers/{TOMASZ}", json=limited, headers=as_(allocation, MANAGER)
    )
    assert change.status_code == 200, change.text
    to_tomasz = {"team_id": "harlesden-early-help", "worker_id": TOMASZ}
    first, second = triaged(), triaged()
    assert _allocate(allocation, first, to_tomasz).status_code == 201

    refused = _allocate(allocation, second, to_tomasz)
    assert refused.status_code == 409, refused.text
    assert "limit of 1" in refused.json()["detail"]
    override = to_tomasz | {"override_reason": "He supported the older sibling last year."}
    without_scope = _allocate(allocation, second, override, scopes=["allocations:write"])
    assert without_scope.status_code == 403
    assert stored(second) == []

    granted = _allocate(allocation, second, override)
    assert granted.status_code == 201, granted.text
    assert "manager override: He supported the older sibling" in granted.json()["reason"]
    loads = allocation.get("/v1/caseloads", headers=as_(allocation, MANAGER)).json()
    tomasz = next(w for w in loads["workers"] if w["worker_id"] == TOMASZ)
    assert (tomasz["caseload"], tomasz["spare"]) == (2, 0)


def test_a_leavers_whole_caseload_moves_one_event_per_case(allocation, triaged, stored):
    cases = [triaged() for _ in range(3)]
    for case_id in cases:
        assert _allocate(allocation, case_id).status_code == 201

    moved = allocation.post(
        f"/v1/workers/{SAMIRA}/caseload/reallocation",
        json={"auto": True, "reason": "Samira left the authority on 28 March 2025."},
        headers=as_(allocation, MANAGER),
    )

    assert moved.status_code == 200, moved.text
    assert sorted(m["case_id"] for m in moved.json()["moved"]) == sorted(cases)
    assert {m["lead_professional"]["worker_id"] for m in moved.json()["moved"]} == {TOMASZ}
    for case_id in cases:
        assert stored(case_id) == [(ALLOCATED, MANAGER), (ALLOCATED, MANAGER)]
    caseload = allocation.get(f"/v1/workers/{SAMIRA}/caseload", headers=as_(allocation, MANAGER))
    assert caseload.json() == []


def test_concurrent_allocations_of_one_case_one_wins_the_other_is_409(allocation, triaged, stored):
    case_id = triaged()

    with ThreadPoolExecutor(2) as pool:
        responses = list(
            pool.map(
                lambda worker: _allocate(
                    allocation, case_id, {"team_id": "harlesden-early-help", "worker_id": worker}
                ),
                [SAMIRA, TOMASZ],
            )
        )

    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert stored(case_id) == [(ALLOCATED, MANAGER)]


def test_a_step_down_is_queued_in_the_locality_of_the_familys_postcode(allocation, stepped_down):
    case_id = stepped_down("NE28 7TH")
    item = case_in_queue(allocation, case_id)
    assert (item["locality"], item["source"]) == ("north-tyneside-howdon-and-wallsend", "step_down")


def _panel(client, meets_on=None):
    response = client.post(
        "/v1/panels",
        json={
            "locality": "brent-harlesden",
            "name": "Harlesden early intervention coordination group",
            "meets_on": (meets_on or date.today() + timedelta(days=7)).isoformat(),
            "members": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
        },
        headers=as_(client, CHAIR),
    )
    assert response.status_code == 201, response.text
    return response.json()["panel_id"]


def _decision(case_id, **changes):
    return {
        "case_id": case_id,
        "package": [
            {
                "provider_id": "brent-domestic-abuse-service",
                "service_id": "idva-family-support",
                "start_date": (date.today() + timedelta(days=14)).isoformat(),
                "intensity": "intensive",
            }
        ],
        "lead_professional": {"worker_id": SAMIRA},
        "members_present": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
    } | changes


def _on_agenda(client, panel_id, case_id):
    def listed():
        agenda = client.get(f"/v1/panels/{panel_id}", headers=as_(client, CHAIR)).json()["agenda"]
        return any(item["case_id"] == case_id for item in agenda)

    wait_until(listed, message=f"case {case_id} never joined panel {panel_id}")


def test_an_assessed_case_joins_the_next_panel_which_records_its_decision(
    allocation, triaged, assessed, stored
):
    panel_id = _panel(allocation)
    later = _panel(allocation, date.today() + timedelta(days=35))
    case_id = triaged()
    assert _allocate(allocation, case_id).status_code == 201
    family_id = case_in_queue(allocation, case_id, "allocated")["family_id"]
    assessed(case_id, family_id)
    _on_agenda(allocation, panel_id, case_id)

    elsewhere = allocation.post(
        f"/v1/panels/{later}/decisions", json=_decision(case_id), headers=as_(allocation, CHAIR)
    )
    assert elsewhere.status_code == 409
    decided = allocation.post(
        f"/v1/panels/{panel_id}/decisions", json=_decision(case_id), headers=as_(allocation, CHAIR)
    )
    assert decided.status_code == 201, decided.text
    assert decided.json()["review_date"] > date.today().isoformat()
    assert decided.json()["package"][0]["commissioned"] is True
    assert stored(case_id) == [(ALLOCATED, MANAGER), (DECIDED, CHAIR)]
    twice = allocation.post(
        f"/v1/panels/{panel_id}/decisions", json=_decision(case_id), headers=as_(allocation, CHAIR)
    )
    assert twice.status_code == 409

    capacity = allocation.get("/v1/providers/capacity", headers=as_(allocation, MANAGER)).json()
    idva = next(s for s in capacity["services"] if s["service_id"] == "idva-family-support")
    assert (idva["taken"], idva["remaining"]) == (1, 7)
    view = allocation.get(f"/v1/cases/{case_id}/allocation", headers=as_(allocation, MANAGER))
    assert view.json()["panel_decisions"][0]["panel_id"] == panel_id


def test_the_panel_list_says_what_the_panel_says(allocation, triaged, assessed):
    """Issue 23: `GET /v1/panels` showed `"agenda": []` for a panel whose detail listed
    a case as awaiting."""
    panel_id = _panel(allocation)
    case_id = triaged()
    assert _allocate(allocation, case_id).status_code == 201
    family_id = case_in_queue(allocation, case_id, "allocated")["family_id"]
    assessed(case_id, family_id)
    _on_agenda(allocation, panel_id, case_id)

    detail = allocation.get(f"/v1/panels/{panel_id}", headers=as_(allocation, CHAIR)).json()
    listed = allocation.get("/v1/panels", headers=as_(allocation, CHAIR)).json()["panels"]
    (in_list,) = [panel for panel in listed if panel["panel_id"] == panel_id]
    assert in_list == detail
    assert [item["status"] for item in in_list["agenda"]] == ["awaiting"]


def test_a_panel_refuses_a_commission_with_no_places_left_and_bad_references(
    allocation, triaged, assessed, stored
):
    provider = {
        "provider_id": "brent-domestic-abuse-service",
        "name": "Brent domestic abuse support service",
        "kind": "commissioned",
        "email": "referrals@brent-das.example.org",
        "services": [
            {
                "service_id": "idva-family-support",
                "name": "Independent domestic violence advocacy and family support",
                "capacity": 1,
            }
        ],
    }
    put = allocation.put(
        "/v1/registry/providers/brent-domestic-abuse-service",
        json=provider,
        headers=as_(allocation, MANAGER),
    )
    assert put.status_code == 200, put.text
    panel_id = _panel(allocation)
    cases = [triaged(), triaged()]
    for case_id in cases:
        family_id = case_in_queue(allocation, case_id)["family_id"]
        assessed(case_id, family_id)
        _on_agenda(allocation, panel_id, case_id)
    url = f"/v1/panels/{panel_id}/decisions"
    chair = as_(allocation, CHAIR)

    assert allocation.post(url, json=_decision(cases[0]), headers=chair).status_code == 201
    full = allocation.post(url, json=_decision(cases[1]), headers=chair)
    assert full.status_code == 409 and full.json()["field"] == "package[0].service_id"
    no_worker = allocation.post(
        url,
        json=_decision(
            cases[1],
            package=[
                {
                    **_decision(cases[1])["package"][0],
                    "provider_id": "brent-family-wellbeing-centres",
                    "service_id": "triple-p-group",
                }
            ],
            lead_professional={"worker_id": "6f1c9a1e-0000-4000-8000-000000000000"},
        ),
        headers=chair,
    )
    assert no_worker.json()["errors"][0]["field"] == "lead_professional.worker_id"
    unknown = allocation.post(
        url, json=_decision("6f1c9a1e-0000-4000-8000-000000000000"), headers=chair
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "case_id"
    assert (
        allocation.post(
            "/v1/panels/6f1c9a1e-0000-4000-8000-000000000000/decisions",
            json=_decision(cases[1]),
            headers=chair,
        ).status_code
        == 404
    )
    assert stored(cases[1]) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("available", "off"), ("available", 0), ("caseload_limit", "5"), ("hours_per_week", "30")],
)
def test_a_worker_s_numbers_and_availability_are_not_coerced(allocation, field, value):
    # Found by schemathesis: "off" was stored as False and "5" as 5, where the schema
    # documents a boolean and numbers.
    worker = {
        "worker_id": TOMASZ,
        "name": "Tomasz Nowak",
        "role": "Youth and family worker",
        "team": "harlesden-early-help",
        "hours_per_week": 30,
        "caseload_limit": 5,
        "available": True,
        "email": "tomasz.nowak@brent.example.gov.uk",
    }
    url = f"/v1/registry/workers/{TOMASZ}"

    refused = allocation.put(url, json=worker | {field: value}, headers=as_(allocation, MANAGER))

    assert refused.status_code == 422, refused.text
    assert field in [error["field"] for error in refused.json()["errors"]]
    assert allocation.put(url, json=worker, headers=as_(allocation, MANAGER)).status_code == 200


def test_registry_changes_are_checked_and_audited(allocation, database_url):
    team = {
        "team_id": "harlesden-youth",
        "name": "Harlesden youth team",
        "locality": "brent-nowhere",
        "age_range": {"minimum": 11, "maximum": 19},
        "specialisms": ["youth_work"],
    }
    url = "/v1/registry/teams/harlesden-youth"
    dangling = allocation.put(
        url, json=team, params={"authority_id": "brent"}, headers=as_(allocation, MANAGER)
    )
    assert dangling.status_code == 422 and dangling.json()["errors"][0]["field"] == "locality"
    no_authority = allocation.put(
        url, json=team | {"locality": "brent-harlesden"}, headers=as_(allocation, MANAGER)
    )
    assert no_authority.json()["errors"][0]["field"] == "query.authority_id"

    added = allocation.put(
        url,
        json=team | {"locality": "brent-harlesden"},
        params={"authority_id": "brent"},
        headers=as_(allocation, MANAGER),
    )
    assert added.status_code == 200, added.text
    registry = allocation.get("/v1/registry", headers=as_(allocation, PRACTITIONER)).json()
    brent = next(a for a in registry["authorities"] if a["authority_id"] == "brent")
    assert "harlesden-youth" in [t["team_id"] for t in brent["teams"]]
    engine = create_engine(database_url)
    with engine.connect() as conn:
        changes = conn.execute(
            select(func.count()).where(
                audit_log.c.action == "registry_change",
                audit_log.c.resource_id == "harlesden-youth",
            )
        ).scalar_one()
    engine.dispose()
    assert changes == 1
