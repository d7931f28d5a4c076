"""Notifications' part of a subject access request: what was disclosed to partners about
the family, and nothing about any other family."""

from hub.testing import bearer
from tests.harness import count_rows, read_table

from .conftest import POLICE, referral, subscribe, wait_until

IG = "information-governance-officer"


def test_the_family_s_disclosures_to_partners_as_each_partner_received_them(
    notifications, publish, database_url
):
    app = notifications()
    subscribe(app, POLICE, ["earlyhelp.referral.*"], "topic")
    # The police see the referrals they made.
    mine, theirs = (
        referral(referrer=POLICE, referrer_type="police", reference=reference)
        for reference in ("MET-MINE", "MET-THEIRS")
    )
    for event in (mine, theirs):
        publish(event)
    wait_until(
        lambda: count_rows(database_url, "deliveries", status="delivered") == 2,
        message="the two referrals never reached the police topic",
    )

    answer = app.get(
        f"/v1/subject-access/families/{mine.family_id}", headers=bearer(app.settings, IG)
    )

    assert answer.status_code == 200, answer.text
    sections = {s["name"]: s["rows"] for s in answer.json()["sections"]}
    (disclosure,) = sections["deliveries"]
    assert disclosure["partner_id"] == POLICE and disclosure["status"] == "delivered"
    # What the partner received, as it received it (decoded, not a string of JSON).
    assert disclosure["body"]["data"]["referral_id"] == str(mine.referral_id)
    assert [r["event_id"] for r in sections["events_received"]] == [str(mine_event_id(app, mine))]
    assert [r["referral_id"] for r in sections["referral_facts"]] == [str(mine.referral_id)]
    assert "MET-THEIRS" not in answer.text and str(theirs.family_id) not in answer.text
    assert [
        (row["action"], row["resource_id"])
        for row in read_table(database_url, "audit_log", actor=IG)
    ] == [("read", str(mine.family_id))]


def mine_event_id(app, event):
    rows = [
        row
        for row in read_table(app.settings.database_url, "event_journal")
        if row["family_id"] == str(event.family_id)
    ]
    return rows[0]["event_id"]


def test_partners_and_other_staff_are_refused(notifications):
    app = notifications()
    for client_id in (POLICE, "front-door-demo", "early-help-service-manager"):
        refused = app.get(
            "/v1/subject-access/families/6f1d3c1e-0000-4000-8000-000000000001",
            headers=bearer(app.settings, client_id),
        )
        assert refused.status_code == 403, client_id
