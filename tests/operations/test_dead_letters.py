"""Operators handle a service's DLQ: `earlyhelp dlq` and the staff-only /v1/dead-letters API.

Case plan really dead-letters a referral: a trigger in its database refuses the
row its chronology writes (a bug, as far as the consumer can tell). Dropping
the trigger is "deploying the fix"; the redrive then applies the record once.
"""

from __future__ import annotations

import time
from uuid import uuid4

import pytest
import sqlalchemy as sa

from caseplan.service import definition
from hub.cli import main
from hub.contracts.intake import ReferralReceived
from hub.testing import bearer

OPERATOR, PARTNER, STAFF = "hub-operator", "harlesden-primary-school", "front-door-demo"


@pytest.fixture
def caseplan(service_client):
    return service_client(definition)


def _refuse_referrals(database_url: str, refuse: bool) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON family_referrals "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                if refuse
                else "DROP TRIGGER refuse"
            )
        elif refuse:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON family_referrals "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        else:
            conn.exec_driver_sql("DROP TRIGGER refuse ON family_referrals")
    engine.dispose()


def _referrals(database_url: str, referral_id: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM family_referrals WHERE referral_id = :id"),
            {"id": referral_id},
        ).scalar_one()
    engine.dispose()
    return count


def _listed(caseplan, event_id: str) -> list[dict]:
    """The DLQ's records of this event (the module's broker holds other tests' too)."""
    response = caseplan.get("/v1/dead-letters", headers=bearer(caseplan.settings, OPERATOR))
    assert response.status_code == 200, response.text
    return [item for item in response.json()["items"] if item["event_id"] == event_id]


def _cli(capsys, monkeypatch, caseplan, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("EARLYHELP_DATABASE_URL", caseplan.settings.database_url)
    monkeypatch.setenv(
        "EARLYHELP_KAFKA_BOOTSTRAP_SERVERS", caseplan.settings.kafka_bootstrap_servers
    )
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().out


def test_operators_list_and_redrive_what_a_service_dead_lettered(
    caseplan, publish, database_url, capsys, monkeypatch
):
    # The consumer's line in /readyz: "ok" while it keeps up (see test_consumer_outage).
    assert caseplan.get("/readyz").json()["checks"]["consumer"] == "ok"
    _refuse_referrals(database_url, refuse=True)
    referral = ReferralReceived.example().model_copy(
        update={"referral_id": uuid4(), "family_id": uuid4()}
    )
    event_id = str(uuid4())
    publish(referral, event_id=event_id)
    deadline = time.monotonic() + 30
    while not (items := _listed(caseplan, event_id)):
        assert time.monotonic() < deadline, "case plan did not dead-letter the referral"
        time.sleep(0.1)

    [item] = items
    assert item["event_id"] == event_id
    assert item["event_type"] == ReferralReceived.event_type
    assert item["status"] == "not applied"
    assert item["original_topic"] == "earlyhelp.intake.v1"
    assert item["attempts"] == caseplan.settings.consumer_max_attempts
    assert "data" not in item  # a record is described, its data not shown
    shown = caseplan.get(
        f"/v1/dead-letters/{item['id']}", headers=bearer(caseplan.settings, OPERATOR)
    )
    assert shown.json() == item
    for who in (PARTNER, STAFF):  # a partner; staff without the operator role
        assert (
            caseplan.get("/v1/dead-letters", headers=bearer(caseplan.settings, who)).status_code
            == 403
        )
    code, out = _cli(capsys, monkeypatch, caseplan, "dlq", "list", "caseplan")
    assert code == 0 and item["id"] in out and "not applied" in out
    code, out = _cli(capsys, monkeypatch, caseplan, "dlq", "show", "caseplan", item["id"])
    assert code == 0 and "status: not applied" in out and f"ce_id: {event_id}" in out
    assert "data:" not in out  # the child's record only with --data
    code, out = _cli(capsys, monkeypatch, caseplan, "dlq", "show", "caseplan", item["id"], "--data")
    assert code == 0 and "data: {" in out

    _refuse_referrals(database_url, refuse=False)  # the fix is deployed
    unknown = caseplan.post(
        "/v1/dead-letter-redrives",
        json={"ids": [item["id"], "earlyhelp.intake.v1.dlq:0:999"]},
        headers=bearer(caseplan.settings, OPERATOR),
    )
    assert unknown.status_code == 422
    assert _referrals(database_url, str(referral.referral_id)) == 0  # nothing redriven
    assert (
        caseplan.post(
            "/v1/dead-letter-redrives", json={}, headers=bearer(caseplan.settings, OPERATOR)
        ).status_code
        == 422
    )
    redriven = caseplan.post(
        "/v1/dead-letter-redrives",
        json={"ids": [item["id"]]},
        headers=bearer(caseplan.settings, OPERATOR),
    )

    assert redriven.status_code == 200, redriven.text
    assert redriven.json() == {
        "results": [{"id": item["id"], "event_id": event_id, "outcome": "applied"}]
    }
    assert _referrals(database_url, str(referral.referral_id)) == 1
    assert [i["status"] for i in _listed(caseplan, event_id)] == ["applied"]
    code, out = _cli(capsys, monkeypatch, caseplan, "dlq", "redrive", "caseplan", "--all")
    assert code == 0 and f"{item['id']}  already applied" in out
    assert _referrals(database_url, str(referral.referral_id)) == 1
