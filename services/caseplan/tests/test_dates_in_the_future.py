"""A family stepped down may not bring a child born after today (the day in England, by
case plan's clock, fixed here: 23:30 UTC on 30 June is already 1 July in London)."""

from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy import create_engine, func, select

from caseplan.service import definition
from hub.http.dependencies import clock
from hub.tables import event_store
from hub.testing import bearer

SOCIAL_CARE = "brent-childrens-social-care"
NOW = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)


def _step_down(born):
    return {
        "social_care_reference": f"CSC-{uuid4().hex[:8]}",
        "children": [
            {
                "person_id": str(uuid4()),
                "given_name": "Kai",
                "family_name": "Robson",
                "date_of_birth": "2012-09-30",
                "postcode": "NW10 4AB",
            },
            {
                "person_id": str(uuid4()),
                "given_name": "Lena",
                "family_name": "Robson",
                "date_of_birth": born,
                "postcode": "NW10 4AB",
            },
        ],
        "reason": "Child in need plan closed",
        "social_care_summary": "Section 17 involvement; risks reduced.",
        "locality": "brent-harlesden",
    }


def test_a_step_down_with_a_child_born_after_today_is_refused(service_client, database_url):
    caseplan = service_client(definition)
    caseplan.headers.update(bearer(caseplan.settings, SOCIAL_CARE))
    caseplan.app.dependency_overrides[clock] = lambda: NOW

    refused = caseplan.post("/v1/step-downs", json=_step_down("2026-07-02"))

    assert refused.status_code == 422, refused.text
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [
        ("children[1].date_of_birth", "date_in_future")
    ]
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_store)).scalar_one() == 0
    engine.dispose()
    born_today_in_london = caseplan.post("/v1/step-downs", json=_step_down("2026-07-01"))
    assert born_today_in_london.status_code == 201, born_today_in_london.text
